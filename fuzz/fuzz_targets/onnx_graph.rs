//! ONNX *graphs*, generated: a handful of nodes drawn from the operators a dense MLP uses and a
//! few it must not (Softmax, Cast, Sigmoid…) and the input scaling it folds (Sub, Mul, Div), wired to earlier names, to initializers of small
//! random shapes or to nothing, with attributes of any kind; opsets and domains varied. The
//! importer must refuse or accept without a panic, and what it accepts must be a consistent chain
//! of 2 to 8 layers (`fuzz::check_imported`). Structure-aware, so the mutations reach the graph checks behind the protobuf.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use trainer::onnx::{self, AttributeProto, NodeProto, model_proto};

#[derive(Debug, Arbitrary)]
enum Op {
    MatMul,
    Gemm,
    Add,
    Sub,
    Mul,
    Div,
    Relu,
    Softmax,
    Identity,
    Flatten,
    Reshape,
    Cast,
    Sigmoid,
}

#[derive(Debug, Arbitrary)]
struct Node {
    op: Op,
    /// Inputs: an earlier tensor (by index), an initializer (by index), or a name of nothing.
    inputs: Vec<Input>,
    attributes: Vec<(u8, i8, i8, bool)>,
    custom_domain: bool,
}

#[derive(Debug, Arbitrary)]
enum Input {
    Tensor(u8),
    Init(u8),
    Nothing,
}

#[derive(Debug, Arbitrary)]
struct Graph {
    nodes: Vec<Node>,
    /// Initializers' shapes (each dimension one of a few widths, or any value).
    inits: Vec<Vec<Dim>>,
    opset: i8,
    /// How the tensor that is the graph's output is chosen.
    output: u8,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Dim {
    W784,
    W10,
    W16,
    One,
    Any(i64),
}

fuzz_target!(|g: Graph| {
    if g.nodes.len() > 24 || g.inits.len() > 8 {
        return;
    }
    let dim = |d: Dim| match d {
        Dim::W784 => 784,
        Dim::W10 => 10,
        Dim::W16 => 16,
        Dim::One => 1,
        Dim::Any(v) => v,
    };
    let inits: Vec<onnx::TensorProto> = g
        .inits
        .iter()
        .enumerate()
        .map(|(i, dims)| {
            let dims: Vec<i64> = dims.iter().take(3).map(|&d| dim(d)).collect();
            // Values only for shapes that are small and valid; the others keep their claim.
            let count = dims.iter().try_fold(1i64, |n, &d| {
                n.checked_mul(d).filter(|&n| (0..=20_000).contains(&n))
            });
            let values = vec![0.5f32; count.unwrap_or(0) as usize];
            let mut t = onnx::float_tensor(&format!("c{i}"), &[], &values);
            t.dims = dims;
            t
        })
        .collect();
    let mut tensors = vec!["pixels".to_string()];
    let mut nodes = Vec::new();
    for (k, n) in g.nodes.iter().enumerate() {
        let op = format!("{:?}", n.op);
        let inputs: Vec<String> = n
            .inputs
            .iter()
            .take(3)
            .map(|i| match *i {
                Input::Tensor(t) => tensors[usize::from(t) % tensors.len()].clone(),
                Input::Init(c) if !inits.is_empty() => {
                    inits[usize::from(c) % inits.len()].name.clone()
                }
                _ => "nothing".into(),
            })
            .collect();
        let output = format!("t{k}");
        let mut node = NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: output.clone(),
            op_type: op,
            ..Default::default()
        };
        if n.custom_domain {
            node.domain = "com.example".into();
        }
        for &(name, i, kind, float) in n.attributes.iter().take(3) {
            let names = ["transA", "transB", "alpha", "beta", "axis", "to", "other"];
            node.attribute.push(AttributeProto {
                name: names[usize::from(name) % names.len()].into(),
                i: i64::from(i),
                f: f32::from(i),
                r#type: if float {
                    onnx::ATTRIBUTE_FLOAT
                } else {
                    i32::from(kind)
                },
            });
        }
        nodes.push(node);
        tensors.push(output);
    }
    let output = tensors[usize::from(g.output) % tensors.len()].clone();
    let mut model = model_proto("fuzz", nodes, inits, 784, 10);
    // Half the runs on the opset every exporter writes, half on any value.
    model.opset_import[0].version = if g.opset >= 0 { 13 } else { i64::from(g.opset) };
    if let Some(graph) = model.graph.as_mut() {
        graph.output[0].name = output;
    }
    if let Ok(net) = trainer::onnx::import(&model.encode_to_vec()) {
        fuzz::check_imported(&net);
    }
});
