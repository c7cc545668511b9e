//! An ONNX graph read as a graph: the data flow followed from the graph's one input to its one
//! output, node by node, every node accounted for; accepted only if it is a chain of dense layers
//! with a ReLU between each two (see the [module docs](super)). The structure is checked first,
//! over names only; the weights are decoded last, once per layer, so memory stays within a small
//! multiple of the file, whatever the file claims.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail, ensure};
use nalgebra::{DMatrix, DVector};
use prost::Message;

use super::schema::*;
use crate::mlp::Mlp;
use infer_core::format::MAX_CLASSES;

/// The default domain's operator sets this reader knows (the operators it accepts mean the same
/// in all of them).
const OPSETS: std::ops::RangeInclusive<i64> = 7..=23;

/// How a message names node `i`: by its name, else by index and operator.
fn named(graph: &GraphProto, i: usize) -> String {
    let n = &graph.node[i];
    if n.name.is_empty() {
        format!("node {i} ({})", n.op_type)
    } else {
        format!("node {:?} ({})", n.name, n.op_type)
    }
}

/// One dense layer found on the path: its weights and bias initializers, by name.
struct Layer<'a> {
    weights: &'a TensorProto,
    /// Whether the weights are `[out, in]` (Gemm's `transB = 1`).
    transposed: bool,
    bias: Option<&'a TensorProto>,
    /// The node the layer's output comes from, for messages.
    node: usize,
}

/// Checks an attribute's kind and returns it.
fn attribute<'a>(
    graph: &'a GraphProto,
    i: usize,
    name: &str,
    kind: i32,
) -> Result<Option<&'a AttributeProto>> {
    let n = &graph.node[i];
    let mut found = n.attribute.iter().filter(|a| a.name == name);
    let a = found.next();
    ensure!(
        found.next().is_none(),
        "{}: attribute {name} is given twice",
        named(graph, i)
    );
    if let Some(a) = a {
        // A writer that leaves the kind out (proto2 default 0) is taken at its word only for
        // the kind this operator defines.
        ensure!(
            a.r#type == kind || a.r#type == 0,
            "{}: attribute {name} is of kind {}, not {}",
            named(graph, i),
            a.r#type,
            if kind == ATTRIBUTE_INT {
                "an integer"
            } else {
                "a float"
            }
        );
    }
    Ok(a)
}

/// Refuses node `i` unless it has `counts` inputs.
fn input_count(
    graph: &GraphProto,
    i: usize,
    counts: std::ops::RangeInclusive<usize>,
) -> Result<()> {
    let n = graph.node[i].input.len();
    ensure!(counts.contains(&n), "{}: has {n} inputs", named(graph, i));
    Ok(())
}

/// Refuses attributes other than `allowed` (an attribute this reader does not know may change
/// what the node computes).
fn only_attributes(graph: &GraphProto, i: usize, allowed: &[&str]) -> Result<()> {
    for a in &graph.node[i].attribute {
        ensure!(
            allowed.contains(&a.name.as_str()),
            "{}: attribute {} is not supported",
            named(graph, i),
            a.name
        );
    }
    Ok(())
}

/// A tensor's shape, checked: no negative dimension, an element count that fits.
fn shape(t: &TensorProto) -> Result<(Vec<usize>, usize)> {
    let mut count = 1usize;
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        let d = usize::try_from(d)
            .with_context(|| format!("initializer {}: dimension {d} is negative", t.name))?;
        count = count
            .checked_mul(d)
            .with_context(|| format!("initializer {}: dimensions {:?} overflow", t.name, t.dims))?;
        dims.push(d);
    }
    Ok((dims, count))
}

/// A float tensor's shape and values.
fn floats(t: &TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
    ensure!(
        t.data_location == 0,
        "initializer {}: its values are in an external file, which import does not read \
         (save the model with its weights inside, e.g. onnx.save(model, path, \
         save_as_external_data=False))",
        t.name
    );
    ensure!(
        t.data_type == FLOAT,
        "initializer {} is of element type {}, not float (quantized models are not imported)",
        t.name,
        t.data_type
    );
    ensure!(
        t.raw_data.is_empty() || t.float_data.is_empty(),
        "initializer {} holds its values twice (float_data and raw_data)",
        t.name
    );
    let (dims, count) = shape(t)?;
    let stored = if t.raw_data.is_empty() {
        t.float_data.len()
    } else {
        t.raw_data.len() / 4
    };
    ensure!(
        stored == count && t.raw_data.len().is_multiple_of(4),
        "initializer {} holds {} bytes of floats for shape {:?}",
        t.name,
        if t.raw_data.is_empty() {
            4 * t.float_data.len()
        } else {
            t.raw_data.len()
        },
        dims
    );
    let values = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect()
    };
    Ok((dims, values))
}

/// How the pixels reach the graph's input, and what import folded into the first layer.
#[derive(Debug, Clone, PartialEq)]
pub struct InputScaling {
    /// Normalization done outside the graph, `(x − mean) / std` on pixels in 0–1 (the usual
    /// PyTorch transform, `Normalize((0.1307,), (0.3081,))`): `None` if the graph takes the
    /// pixels as they are.
    pub outside: Option<(f32, f32)>,
    /// Set by [`import_scaled`]: what was folded, in words (the graph's own input operations,
    /// and whether its input was taken as 0–255 because the graph divides it by 255).
    pub folded: Vec<String>,
}

/// The most graph entries (see [`graph_entries`]) a file may have: decoded, each costs far more
/// memory than its bytes in the file (an empty node input is 2 bytes there, 24 in a `String`), so
/// the count is checked on the wire, before anything is decoded. An exported MLP has a few dozen.
const MAX_GRAPH_ENTRIES: usize = 10_000;

/// Counts, on the protobuf wire without decoding, the graph's nodes, initializers, inputs,
/// outputs, value infos and quantization annotations, and each node's inputs, outputs and
/// attributes. Malformed bytes are an error.
fn graph_entries(bytes: &[u8]) -> Result<usize> {
    let mut total = 0usize;
    for_each_field(bytes, &mut |field, payload| {
        // ModelProto.graph = 7.
        if field != 7 {
            return Ok(());
        }
        for_each_field(payload, &mut |field, payload| {
            match field {
                // GraphProto.node
                1 => {
                    total += 1;
                    // NodeProto.input = 1, output = 2, attribute = 5.
                    for_each_field(payload, &mut |field, _| {
                        total += usize::from(matches!(field, 1 | 2 | 5));
                        Ok(())
                    })?;
                }
                // initializer, input, output, value_info, quantization_annotation,
                // sparse_initializer
                5 | 11 | 12 | 13 | 14 | 15 => total += 1,
                _ => {}
            }
            Ok(())
        })
    })?;
    Ok(total)
}

/// Calls `f` with each field of the protobuf message `bytes`: its number, and its payload for a
/// length-delimited field (empty for the others).
fn for_each_field(bytes: &[u8], f: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
    let malformed = || anyhow::anyhow!("not an ONNX model (the protobuf does not decode)");
    let mut rest = bytes;
    let varint = |rest: &mut &[u8]| -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, tail) = rest.split_first().ok_or_else(malformed)?;
            *rest = tail;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed())
    };
    while !rest.is_empty() {
        let key = varint(&mut rest)?;
        let payload: &[u8] = match key & 7 {
            0 => {
                varint(&mut rest)?;
                &[]
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                rest = rest.get(n..).ok_or_else(malformed)?;
                &[]
            }
            2 => {
                let len = usize::try_from(varint(&mut rest)?).map_err(|_| malformed())?;
                let (payload, tail) = rest.split_at_checked(len).ok_or_else(malformed)?;
                rest = tail;
                payload
            }
            _ => return Err(malformed()),
        };
        f(key >> 3, payload)?;
    }
    Ok(())
}

/// Reads an MLP (inputs → hidden ReLU layers → classes; MNIST's 784 → … → 10) from ONNX bytes into the trainer's network
/// (the graph takes pixels in 0–1; see [`import_scaled`]).
pub fn import(bytes: &[u8]) -> Result<Mlp> {
    import_scaled(
        bytes,
        &mut InputScaling {
            outside: None,
            folded: Vec::new(),
        },
    )
}

/// [`import`], with input scaling folded into the first layer, so that the network takes pixels
/// in 0–1 as every model file does: a normalization done outside the graph (`scaling.outside`),
/// then constants the graph itself subtracts, adds, multiplies or divides its input by before
/// the first layer (one value, or one per pixel). A graph that multiplies its input by 1/255 (or
/// divides it by 255: Keras's `Rescaling(1/255)`) takes pixels in 0–255; the 255 is folded too.
pub fn import_scaled(bytes: &[u8], scaling: &mut InputScaling) -> Result<Mlp> {
    let entries = graph_entries(bytes)?;
    ensure!(
        entries <= MAX_GRAPH_ENTRIES,
        "the graph holds {entries} nodes, tensors and node inputs/outputs/attributes; an MLP of \
         at most {} layers needs a few dozen (this reader takes up to {MAX_GRAPH_ENTRIES})",
        infer_core::format::MAX_LAYERS
    );
    let model =
        ModelProto::decode(bytes).context("not an ONNX model (the protobuf does not decode)")?;
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .context("the model imports no version of the standard operators (opset_import)")?;
    ensure!(
        OPSETS.contains(&opset),
        "the model uses operator set {opset}; import reads {} to {}",
        OPSETS.start(),
        OPSETS.end()
    );
    let graph = model
        .graph
        .as_ref()
        .context("the ONNX model has no graph")?;

    // Names: each initializer once; each tensor produced once; every node input defined.
    let mut inits: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        ensure!(
            inits.insert(t.name.as_str(), t).is_none(),
            "two initializers are named {:?}",
            t.name
        );
    }
    // Older writers list the initializers among the inputs too.
    let inputs: Vec<&str> = graph
        .input
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| !inits.contains_key(n))
        .collect();
    let [input] = inputs[..] else {
        bail!(
            "the graph has {} inputs besides its weights; import reads one (the pixels)",
            inputs.len()
        );
    };
    let [output] = &graph.output[..] else {
        bail!(
            "the graph has {} outputs; import reads one (the logits or probabilities)",
            graph.output.len()
        );
    };
    let output = output.name.as_str();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        ensure!(
            n.domain.is_empty() || n.domain == "ai.onnx",
            "{}: operator domain {:?} is not the standard one",
            named(graph, i),
            n.domain
        );
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            ensure!(
                o != input && !inits.contains_key(o.as_str()),
                "{}: its output {o:?} is also the graph's input or an initializer",
                named(graph, i)
            );
            ensure!(
                producer.insert(o.as_str(), i).is_none(),
                "{}: its output {o:?} is already another node's",
                named(graph, i)
            );
        }
    }
    for (i, n) in graph.node.iter().enumerate() {
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            ensure!(
                x == input || inits.contains_key(x.as_str()) || producer.contains_key(x.as_str()),
                "{}: its input {x:?} is nothing in the graph",
                named(graph, i)
            );
        }
    }
    ensure!(
        output == input || producer.contains_key(output),
        "the graph's output {output:?} is no node's output"
    );
    // Who reads each tensor.
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for x in &n.input {
            readers.entry(x.as_str()).or_default().push(i);
        }
    }
    let init = |i: usize, k: usize, what: &str| -> Result<&TensorProto> {
        graph.node[i]
            .input
            .get(k)
            .and_then(|x| inits.get(x.as_str()).copied())
            .with_context(|| format!("{}: its {what} are not an initializer", named(graph, i)))
    };

    // The walk: from the input, one reader at a time, to the output.
    let mut layers: Vec<Layer<'_>> = Vec::new();
    let mut input_ops: Vec<(usize, &'static str, &TensorProto)> = Vec::new();
    let mut relus = 0usize;
    let mut softmax = false;
    let mut visited = HashSet::new();
    let mut at = input;
    while at != output {
        let next = readers.get(at).map_or(&[][..], Vec::as_slice);
        let [i] = next[..] else {
            bail!(
                "tensor {at:?} is read by {} nodes; a chain of layers reads each once{}",
                next.len(),
                next.iter()
                    .map(|&i| format!(", {}", named(graph, i)))
                    .collect::<String>()
            );
        };
        ensure!(
            visited.insert(i),
            "{}: the graph has a cycle",
            named(graph, i)
        );
        let n = &graph.node[i];
        // (An Add takes its two operands in either order.)
        let operand = if n.op_type == "Add" {
            n.input.iter().position(|x| x == at)
        } else {
            Some(0)
        };
        ensure!(
            operand.is_some_and(|k| n.input.get(k).map(String::as_str) == Some(at)),
            "{}: reads {at:?} as its input {}, not as the data it transforms",
            named(graph, i),
            n.input.iter().position(|x| x == at).unwrap_or(0)
        );
        ensure!(
            n.output.len() == 1,
            "{}: has {} outputs, not one",
            named(graph, i),
            n.output.len()
        );
        ensure!(!softmax, "{}: comes after the Softmax", named(graph, i));
        let after_layer = layers.len() > relus;
        match n.op_type.as_str() {
            "Identity" => only_attributes(graph, i, &[])?,
            "Flatten" | "Reshape" if layers.is_empty() => {
                if n.op_type == "Flatten" {
                    only_attributes(graph, i, &["axis"])?;
                    let axis = attribute(graph, i, "axis", ATTRIBUTE_INT)?.map_or(1, |a| a.i);
                    ensure!(
                        axis == 1,
                        "{}: axis {axis} does not keep the batch",
                        named(graph, i)
                    );
                } else {
                    only_attributes(graph, i, &["allowzero"])?;
                    let shape = init(i, 1, "target shape")?;
                    ensure!(
                        shape.data_type == INT64 && shape.dims.len() == 1 && shape.dims[0] == 2,
                        "{}: the target shape is not a pair of int64 [batch, features]",
                        named(graph, i)
                    );
                }
            }
            "Cast" => {
                only_attributes(graph, i, &["to", "saturate"])?;
                let to = attribute(graph, i, "to", ATTRIBUTE_INT)?.map_or(0, |a| a.i);
                ensure!(
                    to == i64::from(FLOAT),
                    "{}: casts to element type {to}, which changes the values (only a cast to \
                     float changes nothing)",
                    named(graph, i)
                );
            }
            "MatMul" | "Gemm" => {
                ensure!(
                    !after_layer,
                    "{}: a second dense layer with no Relu after the first (layer {})",
                    named(graph, i),
                    layers.len()
                );
                let mut layer = Layer {
                    weights: init(i, 1, "weights")?,
                    transposed: false,
                    bias: None,
                    node: i,
                };
                if n.op_type == "Gemm" {
                    only_attributes(graph, i, &["alpha", "beta", "transA", "transB"])?;
                    let int = |name| -> Result<i64> {
                        Ok(attribute(graph, i, name, ATTRIBUTE_INT)?.map_or(0, |a| a.i))
                    };
                    ensure!(
                        int("transA")? == 0,
                        "{}: transA is not supported",
                        named(graph, i)
                    );
                    let trans_b = int("transB")?;
                    ensure!(
                        trans_b == 0 || trans_b == 1,
                        "{}: transB = {trans_b}",
                        named(graph, i)
                    );
                    layer.transposed = trans_b == 1;
                    for name in ["alpha", "beta"] {
                        let v = attribute(graph, i, name, ATTRIBUTE_FLOAT)?.map_or(1.0, |a| a.f);
                        ensure!(
                            v == 1.0,
                            "{}: {name} = {v} is not supported (only 1)",
                            named(graph, i)
                        );
                    }
                    input_count(graph, i, 2..=3)?;
                    if n.input.get(2).is_some_and(|b| !b.is_empty()) {
                        layer.bias = Some(init(i, 2, "bias")?);
                    }
                } else {
                    only_attributes(graph, i, &[])?;
                    input_count(graph, i, 2..=2)?;
                }
                layers.push(layer);
                ensure!(
                    layers.len() <= infer_core::format::MAX_LAYERS,
                    "{}: more than {} dense layers",
                    named(graph, i),
                    infer_core::format::MAX_LAYERS
                );
            }
            "Sub" | "Div" | "Mul" | "Add" if layers.is_empty() => {
                only_attributes(graph, i, &[])?;
                input_count(graph, i, 2..=2)?;
                ensure!(
                    operand == Some(0) || matches!(n.op_type.as_str(), "Mul" | "Add"),
                    "{}: the input is its second operand",
                    named(graph, i)
                );
                let other = 1 - operand.unwrap_or(0).min(1);
                let c = init(i, other, "operand")?;
                let op = match n.op_type.as_str() {
                    "Sub" => "Sub",
                    "Div" => "Div",
                    "Mul" => "Mul",
                    _ => "Add",
                };
                input_ops.push((i, op, c));
            }
            "Add" => {
                only_attributes(graph, i, &[])?;
                let last = layers
                    .last_mut()
                    .filter(|l| l.bias.is_none() && after_layer);
                let other = n.input.get(1 - operand.unwrap_or(0).min(1));
                let bias = other.and_then(|b| inits.get(b.as_str()).copied());
                match (last, bias, n.input.len()) {
                    (Some(layer), Some(b), 2) if graph.node[layer.node].op_type == "MatMul" => {
                        layer.bias = Some(b);
                    }
                    _ => bail!(
                        "{}: only a bias (an initializer) added right after a MatMul is supported",
                        named(graph, i)
                    ),
                }
            }
            "Relu" => {
                only_attributes(graph, i, &[])?;
                ensure!(
                    after_layer,
                    "{}: a Relu {}",
                    named(graph, i),
                    if layers.is_empty() {
                        "on the input, before any layer"
                    } else {
                        "twice in a row"
                    }
                );
                relus += 1;
            }
            "Softmax" => {
                only_attributes(graph, i, &["axis"])?;
                let axis = attribute(graph, i, "axis", ATTRIBUTE_INT)?.map_or(-1, |a| a.i);
                ensure!(
                    axis == -1 || axis == 1,
                    "{}: softmax over axis {axis}, not the classes",
                    named(graph, i)
                );
                ensure!(
                    after_layer,
                    "{}: a Softmax that is not after the last layer",
                    named(graph, i)
                );
                softmax = true;
            }
            other => bail!(
                "{}: operator {other} is not part of a dense ReLU MLP (Gemm or MatMul+Add, Relu, \
                 optional Flatten/Reshape at the input and Softmax at the output)",
                named(graph, i)
            ),
        }
        at = &n.output[0];
    }
    if let Some(i) = (0..graph.node.len()).find(|i| !visited.contains(i)) {
        bail!(
            "{}: not on the path from the graph's input to its output",
            named(graph, i)
        );
    }
    ensure!(
        relus + 1 == layers.len(),
        "the model needs a Relu after every layer but the last ({} layers, {relus} Relu)",
        layers.len()
    );

    // The inputs: the first layer's (its weights' shape, before their values are decoded).
    let inputs = match layers.first() {
        Some(first) => {
            let (dims, _) = shape(first.weights)?;
            match (&dims[..], first.transposed) {
                ([k, _], false) | ([_, k], true) => *k,
                _ => bail!(
                    "{}: weights {} are not a matrix ({dims:?})",
                    named(graph, first.node),
                    first.weights.name
                ),
            }
        }
        None => bail!("the graph has no dense layer"),
    };
    ensure!(
        (1..=infer_core::format::MAX_FORMAT_WIDTH).contains(&inputs),
        "the first layer takes {inputs} inputs; a model takes 1 to {}",
        infer_core::format::MAX_FORMAT_WIDTH
    );
    // What reaches the first layer: `scale[k] · x[k] + shift[k]` of input `k` in 0–1.
    let (mut scale, mut shift) = (vec![1.0f64; inputs], vec![0.0f64; inputs]);
    if let Some((mean, std)) = scaling.outside {
        ensure!(
            mean.is_finite() && std.is_finite() && std > 0.0,
            "--input-mean {mean} --input-std {std}: a finite mean and a positive std are needed"
        );
        scale.fill(1.0 / f64::from(std));
        shift.fill(-f64::from(mean) / f64::from(std));
        scaling
            .folded
            .push(format!("(x − {mean}) / {std} (--input-mean, --input-std)"));
    }

    // The graph's own input scaling, in order.
    let mut raw_255 = false;
    for &(i, op, c) in &input_ops {
        let (dims, values) = floats(c)?;
        ensure!(
            values.len() == 1 || values.len() == inputs,
            "{}: its constant has {} values (shape {dims:?}), not 1 or {inputs}",
            named(graph, i),
            values.len()
        );
        let value = |k: usize| f64::from(values[if values.len() == 1 { 0 } else { k }]);
        if input_ops.first().is_some_and(|f| f.0 == i)
            && values.len() == 1
            && ((op == "Mul" && (value(0) * 255.0 - 1.0).abs() < 1e-6)
                || (op == "Div" && (value(0) - 255.0).abs() < 1e-3))
        {
            raw_255 = true;
        }
        for k in 0..inputs {
            let v = value(k);
            ensure!(
                v.is_finite() && (op != "Div" || v != 0.0),
                "{}: its constant {v} cannot scale an input",
                named(graph, i)
            );
            match op {
                "Sub" => shift[k] -= v,
                "Add" => shift[k] += v,
                "Mul" => (scale[k], shift[k]) = (scale[k] * v, shift[k] * v),
                _ => (scale[k], shift[k]) = (scale[k] / v, shift[k] / v),
            }
        }
        scaling.folded.push(format!(
            "{op} {} ({})",
            if values.len() == 1 {
                format!("{}", values[0])
            } else {
                format!("{inputs} constants")
            },
            named(graph, i)
        ));
    }
    if raw_255 {
        ensure!(
            scaling.outside.is_none(),
            "the graph divides its input by 255 (it takes pixels in 0–255) and --input-mean / \
             --input-std also describe its input: give one or the other"
        );
        for (sc, sh) in scale.iter_mut().zip(&mut shift) {
            (*sc, *sh) = (*sc * 255.0, *sh);
        }
        scaling.folded.insert(
            0,
            "the graph divides its input by 255: it takes pixels in 0–255".into(),
        );
    }

    // The weights, one layer at a time: `[in][out]` row-major.
    let mut dense = Vec::with_capacity(layers.len());
    for layer in &layers {
        let (dims, values) = floats(layer.weights)?;
        let [rows, cols] = dims[..] else {
            bail!(
                "{}: weights {} are not a matrix ({dims:?})",
                named(graph, layer.node),
                layer.weights.name
            );
        };
        let (inputs, outputs) = if layer.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let bias = match layer.bias {
            Some(t) => floats(t)?,
            None => (vec![outputs], vec![0.0; outputs]),
        };
        ensure!(
            bias.1.len() == outputs && bias.0.iter().filter(|&&d| d != 1).count() <= 1,
            "{}: bias {:?} of shape {:?} for {outputs} outputs",
            named(graph, layer.node),
            layer.bias.map_or("", |b| b.name.as_str()),
            bias.0
        );
        let at = |k: usize, j: usize| {
            if layer.transposed {
                values[j * inputs + k]
            } else {
                values[k * outputs + j]
            }
        };
        dense.push(crate::mlp::Dense {
            w: DMatrix::from_fn(outputs, inputs, |j, k| at(k, j)),
            b: DVector::from_vec(bias.1),
        });
    }
    let widths: Vec<(usize, usize)> = dense.iter().map(|d| (d.w.ncols(), d.w.nrows())).collect();
    ensure!(
        widths.len() >= 2
            && widths.windows(2).all(|p| p[0].1 == p[1].0)
            && widths
                .last()
                .is_some_and(|s| (1..=MAX_CLASSES).contains(&s.1)),
        "the model's dense layers are {widths:?}, not a chain of 2 to {} layers to at most \
         {MAX_CLASSES} classes",
        infer_core::format::MAX_LAYERS
    );
    let last = dense.pop().context("no layers")?;
    let mut rest = dense.into_iter();
    let mut first = rest.next().context("no layers")?;
    // W·(scale ⊙ x + shift) + b = (W · diag(scale)) · x + (W · shift + b), in f64.
    if scale.iter().any(|&v| v != 1.0) || shift.iter().any(|&v| v != 0.0) {
        for j in 0..first.w.nrows() {
            let mut b = f64::from(first.b[j]);
            for k in 0..inputs {
                let w = f64::from(first.w[(j, k)]);
                b += w * shift[k];
                first.w[(j, k)] = (w * scale[k]) as f32;
            }
            first.b[j] = b as f32;
        }
    }
    Ok(Mlp {
        w1: first.w,
        b1: first.b,
        middle: rest.collect(),
        // The trainer's output layer is `hidden × classes`.
        w2: last.w.transpose(),
        b2: last.b,
    })
}
