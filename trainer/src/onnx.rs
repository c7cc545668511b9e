//! ONNX in and out for the 784-512-10 network.
//!
//! - Export: the f32 model as `MatMul → Add → Relu → MatMul → Add` (output `logits`); an integer
//!   model (int8, or int4 whose −8…7 values an int8 tensor holds exactly) as the same graph with
//!   QuantizeLinear/DequantizeLinear pairs carrying infer-core's exact scales and zero points: the
//!   input quantized at 1/255 (the raw pixels), per-channel symmetric weights (stored as uint8
//!   `w + 128` with zero point 128, which ONNX Runtime multiplies exactly on every x86 CPU), the hidden
//!   activations requantized at the model's hidden scale. The input is `pixels`, `[N, 784]`
//!   floats in 0–1 (the raw pixel / 255, as Keras takes them). Opset 13.
//! - Import: a graph of two dense layers with a ReLU between — `Gemm` (any `transB`, as
//!   `torch.onnx.export` writes it) or `MatMul` + `Add` (as tf2onnx writes Keras's `Dense`) —
//!   optionally ending in `Softmax`, with float initializers; anything else is refused naming what
//!   was found.
//!
//! The protobuf messages below are the subset of `onnx.proto` (proto2) these need, field numbers
//! as there.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail, ensure};
use infer_core::format::QuantLayer;
use infer_core::{F32Model, QuantModel};

use crate::shape::{CLASSES, INPUTS};
use nalgebra::{DMatrix, DVector};
use prost::Message;

use crate::mlp::Mlp;

/// `ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// The IR version.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Operator sets used.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Who wrote it.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// `""` for the default domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Opset version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto` (the scalar kinds).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// A float value.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// An integer value.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// The kind: 1 float, 2 int.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type: [`FLOAT`], [`UINT8`], [`INT8`], …
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Float elements (when not in `raw_data`).
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Elements as little-endian bytes.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

/// `ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto` (tensors only).
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// A tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    /// Element type.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: a size or a symbolic name.
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// A fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// A symbolic size.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

/// `TensorProto.DataType` values used here.
pub const FLOAT: i32 = 1;
/// Unsigned byte.
pub const UINT8: i32 = 2;
/// Signed byte.
pub const INT8: i32 = 3;

/// A float tensor initializer.
pub fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: FLOAT,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn byte_tensor(
    name: &str,
    data_type: i32,
    dims: &[i64],
    values: impl Iterator<Item = u8>,
) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type,
        name: name.into(),
        raw_data: values.collect(),
        ..Default::default()
    }
}

/// A node with a name of its own.
pub fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| (*s).into()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        attribute: Vec::new(),
    }
}

/// An integer attribute.
pub fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        r#type: 2,
        ..Default::default()
    }
}

fn value_info(name: &str, columns: i64) -> ValueInfoProto {
    let dim = vec![
        Dimension {
            dim_value: None,
            dim_param: Some("N".into()),
        },
        Dimension {
            dim_value: Some(columns),
            dim_param: None,
        },
    ];
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// A model around `graph` (nodes and initializers), input `pixels` and output `logits`.
pub fn model_proto(
    name: &str,
    node: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    inputs: usize,
    classes: usize,
) -> ModelProto {
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "mnist-mcu trainer".into(),
        graph: Some(GraphProto {
            node,
            name: name.into(),
            initializer,
            input: vec![value_info("pixels", inputs as i64)],
            output: vec![value_info("logits", classes as i64)],
        }),
    }
}

/// The name of the tensor layer `l` (from 0) of `layers` writes: `logits` for the last.
fn layer_output(l: usize, layers: usize) -> String {
    if l + 1 == layers {
        "logits".into()
    } else {
        format!("h{}", l + 1)
    }
}

/// The f32 network as ONNX: a MatMul, an Add and (but for the last) a Relu per layer.
pub fn export_f32(model: &F32Model<'_>) -> Vec<u8> {
    let n = model.layers().len();
    let (mut nodes, mut inits) = (Vec::new(), Vec::new());
    let mut input = "pixels".to_string();
    for (l, layer) in model.layers().iter().enumerate() {
        let shape = layer.layer();
        let i = l + 1;
        let (w, b, z) = (format!("w{i}"), format!("b{i}"), format!("z{i}"));
        let output = layer_output(l, n);
        let sum = if shape.last {
            output.clone()
        } else {
            format!("a{i}")
        };
        nodes.push(node("MatMul", &[&input, &w], &z));
        nodes.push(node("Add", &[&z, &b], &sum));
        if !shape.last {
            nodes.push(node("Relu", &[&sum], &output));
        }
        // infer-core's weights are input-major, MatMul's [in, out].
        let weights: Vec<f32> = layer.weights().collect();
        let biases: Vec<f32> = layer.biases().collect();
        inits.push(float_tensor(
            &w,
            &[shape.inputs as i64, shape.outputs as i64],
            &weights,
        ));
        inits.push(float_tensor(&b, &[shape.outputs as i64], &biases));
        input = output;
    }
    let header = model.header();
    model_proto(
        "mnist_mlp_f32",
        nodes,
        inits,
        header.inputs(),
        header.classes(),
    )
    .encode_to_vec()
}

/// An integer network (int8 or int4 layers) as an ONNX QDQ graph with its exact scales and zero
/// points.
pub fn export_quant(model: &QuantModel<'_>) -> Result<Vec<u8>> {
    let mut graph = (Vec::new(), Vec::new());
    let n = model.layers().len();
    // The raw pixels: u8 at 1/255, as infer-core takes them.
    qdq_activation(&mut graph, "pixels", "x", 1.0 / 255.0);
    let mut input = "x".to_string();
    for (l, layer) in model.layers().iter().enumerate() {
        let i = l + 1;
        let scales: Vec<f32> = layer.w_scales().collect();
        let in_scale = f64::from(layer.input_scale());
        let output = layer_output(l, n);
        match layer.act_scale() {
            None => qdq_dense(&mut graph, layer, i, (&input, &output), &scales, in_scale)?,
            Some(act_scale) => {
                let (sum, relu) = (format!("a{i}"), format!("r{i}"));
                qdq_dense(&mut graph, layer, i, (&input, &sum), &scales, in_scale)?;
                graph.0.push(node("Relu", &[&sum], &relu));
                qdq_activation(&mut graph, &relu, &output, act_scale);
            }
        }
        input = output;
    }
    let (nodes, inits) = graph;
    let header = model.header();
    Ok(model_proto(
        "mnist_mlp_qdq",
        nodes,
        inits,
        header.inputs(),
        header.classes(),
    )
    .encode_to_vec())
}

/// Nodes and initializers of a graph being built.
type Graph = (Vec<NodeProto>, Vec<TensorProto>);

/// `input` quantized to u8 at `scale` (zero point 0) and back, as `output` (the tensors named
/// after it: `output_scale`, `output_zero`, `output_q`).
fn qdq_activation(graph: &mut Graph, input: &str, output: &str, scale: f32) {
    let (s, z, q) = (
        format!("{output}_scale"),
        format!("{output}_zero"),
        format!("{output}_q"),
    );
    graph.0.push(node("QuantizeLinear", &[input, &s, &z], &q));
    graph
        .0
        .push(node("DequantizeLinear", &[&q, &s, &z], output));
    graph.1.push(float_tensor(&s, &[], &[scale]));
    graph
        .1
        .push(byte_tensor(&z, UINT8, &[], std::iter::once(0)));
}

/// Where the exported integer weights sit: `w + 128` as uint8, with zero point 128. The same
/// real values as int8 with zero point 0, but ONNX Runtime then multiplies u8 inputs by u8
/// weights, which its AVX2 kernels sum exactly; u8 × s8 goes through `vpmaddubsw`, whose 16-bit
/// pair sums saturate (255 · 127 · 2 > 32767) on CPUs without VNNI, and changed 0.28 % of the
/// test digits' classes there (microsoft/onnxruntime#6004).
const WEIGHT_ZERO_POINT: i32 = 128;

/// Layer `i` (from 1) of a model: its integer weights in MatMul's `[in, out]` layout, as uint8
/// with zero point [`WEIGHT_ZERO_POINT`], dequantized per output (`scales`), then `MatMul` and
/// `Add` of the bias in real units (the i32 bias times `in_scale · scale`), from `input` to
/// `output`.
fn qdq_dense(
    graph: &mut Graph,
    layer: &QuantLayer<'_>,
    i: usize,
    (input, output): (&str, &str),
    scales: &[f32],
    in_scale: f64,
) -> Result<()> {
    let shape = layer.layer();
    let (inputs, outputs) = (shape.inputs, shape.outputs);
    let weights: Vec<u8> = (0..inputs * outputs)
        .map(|n| {
            let (row, col) = (n % outputs, n / outputs);
            layer
                .weight(row, col)
                .and_then(|w| u8::try_from(w + WEIGHT_ZERO_POINT).ok())
                .ok_or_else(|| anyhow!("no weight ({i}, {row}, {col})"))
        })
        .collect::<Result<_>>()?;
    let bias: Vec<f32> = (0..outputs)
        .map(|r| {
            let b = layer.bias(r).ok_or_else(|| anyhow!("no bias ({i}, {r})"))?;
            Ok((f64::from(b) * in_scale * f64::from(scales[r])) as f32)
        })
        .collect::<Result<_>>()?;
    let w = format!("w{i}");
    let (q, s, z) = (format!("{w}_q"), format!("{w}_scale"), format!("{w}_zero"));
    let (product, b) = (format!("z{i}"), format!("b{i}"));
    let mut dequantize = node("DequantizeLinear", &[&q, &s, &z], &w);
    dequantize.attribute.push(int_attribute("axis", 1));
    graph.0.push(dequantize);
    graph.0.push(node("MatMul", &[input, &w], &product));
    graph.0.push(node("Add", &[&product, &b], output));
    let (rows, cols) = (inputs as i64, outputs as i64);
    graph
        .1
        .push(byte_tensor(&q, UINT8, &[rows, cols], weights.into_iter()));
    graph.1.push(float_tensor(&s, &[cols], scales));
    graph.1.push(byte_tensor(
        &z,
        UINT8,
        &[cols],
        std::iter::repeat_n(WEIGHT_ZERO_POINT as u8, outputs),
    ));
    graph.1.push(float_tensor(&b, &[cols], &bias));
    Ok(())
}

/// A float tensor's values and shape.
fn floats(t: &TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
    ensure!(
        t.data_type == FLOAT,
        "initializer {} is of element type {}, not float (quantized models are not imported)",
        t.name,
        t.data_type
    );
    let values = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        ensure!(
            t.raw_data.len().is_multiple_of(4),
            "initializer {} has a partial float",
            t.name
        );
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    ensure!(
        dims.iter().product::<usize>() == values.len(),
        "initializer {} holds {} values for shape {:?}",
        t.name,
        values.len(),
        dims
    );
    Ok((dims, values))
}

/// One dense layer found in a graph: weights `[in][out]` row-major, and a bias.
struct Dense {
    inputs: usize,
    outputs: usize,
    w: Vec<f32>,
    b: Option<Vec<f32>>,
}

/// Reads an MLP (784 → hidden ReLU layers → 10) from ONNX bytes into the trainer's network.
pub fn import(bytes: &[u8]) -> Result<Mlp> {
    let model =
        ModelProto::decode(bytes).context("not an ONNX model (the protobuf does not decode)")?;
    let graph = model.graph.context("the ONNX model has no graph")?;
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let init = |name: &str| inits.get(name).copied();
    let mut layers: Vec<Dense> = Vec::new();
    let mut relus_after = Vec::new();
    for n in &graph.node {
        let attr = |name: &str| n.attribute.iter().find(|a| a.name == name);
        match n.op_type.as_str() {
            "Gemm" => {
                let (Some(b_name), Some(w)) =
                    (n.input.get(1), n.input.get(1).and_then(|w| init(w)))
                else {
                    bail!("Gemm {}: its weights are not an initializer", n.name);
                };
                ensure!(
                    attr("transA").is_none_or(|a| a.i == 0),
                    "Gemm {}: transA is not supported",
                    n.name
                );
                for (key, default) in [("alpha", 1.0), ("beta", 1.0)] {
                    let v = attr(key).map_or(default, |a| a.f);
                    ensure!(
                        v == 1.0,
                        "Gemm {}: {key} = {v} is not supported (only 1)",
                        n.name
                    );
                }
                let (dims, values) = floats(w)?;
                let [rows, cols] = dims[..] else {
                    bail!(
                        "Gemm {}: weights {b_name} are not a matrix ({dims:?})",
                        n.name
                    );
                };
                let trans_b = attr("transB").is_some_and(|a| a.i != 0);
                let (inputs, outputs) = if trans_b { (cols, rows) } else { (rows, cols) };
                let w = if trans_b {
                    (0..inputs * outputs)
                        .map(|i| values[(i % outputs) * inputs + i / outputs])
                        .collect()
                } else {
                    values
                };
                let b = match n.input.get(2).and_then(|b| init(b)) {
                    Some(t) => Some(floats(t)?.1),
                    None => None,
                };
                layers.push(Dense {
                    inputs,
                    outputs,
                    w,
                    b,
                });
            }
            "MatMul" => {
                let Some(w) = n.input.get(1).and_then(|w| init(w)) else {
                    bail!("MatMul {}: its weights are not an initializer", n.name);
                };
                let (dims, values) = floats(w)?;
                let [inputs, outputs] = dims[..] else {
                    bail!("MatMul {}: weights are not a matrix ({dims:?})", n.name);
                };
                layers.push(Dense {
                    inputs,
                    outputs,
                    w: values,
                    b: None,
                });
            }
            "Add" => {
                let bias = n.input.iter().find_map(|i| init(i));
                match (layers.last_mut(), bias) {
                    (Some(layer), Some(t)) if layer.b.is_none() => layer.b = Some(floats(t)?.1),
                    _ => bail!("Add {}: only a bias after MatMul is supported", n.name),
                }
            }
            "Relu" => relus_after.push(layers.len()),
            "Softmax" | "Identity" | "Flatten" | "Reshape" | "Cast" => {}
            other => bail!(
                "operator {other} (node {}) is not part of a dense ReLU MLP \
                 (Gemm or MatMul+Add, Relu, optional Softmax)",
                n.name
            ),
        }
    }
    let shape: Vec<(usize, usize)> = layers.iter().map(|l| (l.inputs, l.outputs)).collect();
    let chained = shape.windows(2).all(|p| p[0].1 == p[1].0);
    ensure!(
        shape.len() >= 2
            && shape.len() <= infer_core::format::MAX_LAYERS
            && chained
            && shape.first().map(|s| s.0) == Some(INPUTS)
            && shape.last().map(|s| s.1) == Some(CLASSES),
        "the model's dense layers are {shape:?}, not a chain 784→…→10 of 2 to {} layers",
        infer_core::format::MAX_LAYERS
    );
    let expected: Vec<usize> = (1..layers.len()).collect();
    ensure!(
        relus_after == expected,
        "the model needs a Relu after every layer but the last (found after layers \
         {relus_after:?} of {})",
        layers.len()
    );
    let bias = |l: &Dense| -> Result<Vec<f32>> {
        let b = l.b.clone().unwrap_or_else(|| vec![0.0; l.outputs]);
        ensure!(
            b.len() == l.outputs,
            "a bias has {} values for {} outputs",
            b.len(),
            l.outputs
        );
        Ok(b)
    };
    let (first, last) = (&layers[0], &layers[layers.len() - 1]);
    let (hidden, last_hidden) = (first.outputs, last.inputs);
    // Imported weights are `[in][out]` row-major; the trainer's matrices are `out × in` (the
    // output layer `hidden × classes`).
    let middle = layers[1..layers.len() - 1]
        .iter()
        .map(|l| {
            Ok(crate::mlp::Dense {
                w: DMatrix::from_fn(l.outputs, l.inputs, |j, k| l.w[k * l.outputs + j]),
                b: DVector::from_vec(bias(l)?),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Mlp {
        w1: DMatrix::from_fn(hidden, INPUTS, |j, k| first.w[k * hidden + j]),
        b1: DVector::from_vec(bias(first)?),
        middle,
        w2: DMatrix::from_fn(last_hidden, CLASSES, |j, c| last.w[j * CLASSES + c]),
        b2: DVector::from_vec(bias(last)?),
    })
}
