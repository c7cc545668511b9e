//! A model file as ONNX: MatMul/Add/Relu for f32, QDQ around the same for the integer models.

use anyhow::{Result, anyhow};
use infer_core::format::QuantLayer;
use infer_core::{F32Model, QuantModel};
use prost::Message;

use super::schema::*;

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
