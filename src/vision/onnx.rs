//! EfficientNet-Lite0 as an ONNX graph, built in Rust from the checkpoint's tensors.
//!
//! The protobuf messages below are the subset of `onnx.proto` a plain inference graph
//! needs (field numbers as upstream), encoded with `prost`. The builder folds every
//! BatchNorm into the preceding convolution, writes TensorFlow "SAME" padding as explicit
//! (possibly asymmetric) pads for a square input (224×224 unless a [`GraphSpec`] says
//! otherwise), and exposes two outputs: `features` (the 1,280-d global-average-pooled
//! activations) and `logits` (1,000 ImageNet classes); on request a third, `feature_map`
//! (the head's ReLU6 activations before pooling, N×1280×S×S with S = side/32 rounded up),
//! from which the retrieval descriptors (`vision::descriptor`) are pooled.
//! Running the graph is `model`'s job, not this module's.

use prost::Message;

use super::preprocess::INPUT_SIZE;
use super::weights::{Checkpoint, Tensor, WeightsError};
use crate::embedding::EMBEDDING_DIM;

pub const NUM_CLASSES: usize = 1000;
pub const INPUT_NAME: &str = "input";
pub const FEATURES_NAME: &str = "features";
pub const LOGITS_NAME: &str = "logits";
pub const FEATURE_MAP_NAME: &str = "feature_map";

/// What to build: the square input side, and whether to expose `feature_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphSpec {
    pub input_size: usize,
    pub feature_map: bool,
}

impl Default for GraphSpec {
    /// The reference network: 224×224, `features` and `logits` only.
    fn default() -> Self {
        Self {
            input_size: INPUT_SIZE,
            feature_map: false,
        }
    }
}

impl GraphSpec {
    /// Side of the head's activation map for this input (five stride-2 stages, SAME).
    pub fn map_side(&self) -> usize {
        (0..5).fold(self.input_size, |s, _| s.div_ceil(2))
    }
}

const BN_EPS: f32 = 1e-3;
const OPSET: i64 = 13;
const IR_VERSION: i64 = 8;
const ELEM_FLOAT: i32 = 1;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// AttributeType: FLOAT = 1, INT = 2, INTS = 7.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

/// One MBConv stage of EfficientNet-Lite0: (repeats, kernel, stride, expand ratio, out channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];
const STEM_CHANNELS: usize = 32;

/// TensorFlow "SAME" padding for one spatial axis: (before, after, output size).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, out)
}

/// Builds the ONNX model (serialised protobuf) for EfficientNet-Lite0 from its checkpoint.
pub fn build_efficientnet_lite0(ckpt: &Checkpoint) -> Result<Vec<u8>, WeightsError> {
    build_efficientnet_lite0_with(ckpt, GraphSpec::default())
}

/// [`build_efficientnet_lite0`] for another input size and/or with the `feature_map` output.
pub fn build_efficientnet_lite0_with(
    ckpt: &Checkpoint,
    spec: GraphSpec,
) -> Result<Vec<u8>, WeightsError> {
    let mut g = GraphBuilder::default();
    let mut x = INPUT_NAME.to_string();
    let mut size = spec.input_size;

    // Stem.
    (x, size) = g.conv_bn(
        ckpt,
        &x,
        size,
        "_conv_stem",
        "_bn0",
        3,
        STEM_CHANNELS,
        3,
        2,
        1,
    )?;
    x = g.relu6(&x);

    let mut channels = STEM_CHANNELS;
    let mut block = 0;
    for (repeats, kernel, stride, expand, out) in STAGES {
        for r in 0..repeats {
            let stride = if r == 0 { stride } else { 1 };
            let input = x.clone();
            let p = format!("_blocks.{block}");
            let hidden = channels * expand;
            let mut h = x.clone();
            if expand != 1 {
                (h, _) = g.conv_bn(
                    ckpt,
                    &h,
                    size,
                    &format!("{p}._expand_conv"),
                    &format!("{p}._bn0"),
                    channels,
                    hidden,
                    1,
                    1,
                    1,
                )?;
                h = g.relu6(&h);
            }
            let new_size;
            (h, new_size) = g.conv_bn(
                ckpt,
                &h,
                size,
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                hidden,
                hidden,
                kernel,
                stride,
                hidden,
            )?;
            h = g.relu6(&h);
            (h, _) = g.conv_bn(
                ckpt,
                &h,
                new_size,
                &format!("{p}._project_conv"),
                &format!("{p}._bn2"),
                hidden,
                out,
                1,
                1,
                1,
            )?;
            if stride == 1 && channels == out {
                h = g.node("Add", vec![input, h], vec![]);
            }
            x = h;
            size = new_size;
            channels = out;
            block += 1;
        }
    }

    // Head, pooling, classifier.
    (x, _) = g.conv_bn(
        ckpt,
        &x,
        size,
        "_conv_head",
        "_bn1",
        channels,
        EMBEDDING_DIM,
        1,
        1,
        1,
    )?;
    x = g.relu6(&x);
    if spec.feature_map {
        g.named_node("Identity", vec![x.clone()], FEATURE_MAP_NAME, vec![]);
    }
    let pooled = g.node("GlobalAveragePool", vec![x], vec![]);
    g.named_node(
        "Flatten",
        vec![pooled],
        FEATURES_NAME,
        vec![attr_int("axis", 1)],
    );
    let fc_w = ckpt.get_shaped("_fc.weight", &[NUM_CLASSES, EMBEDDING_DIM])?;
    let fc_b = ckpt.get_shaped("_fc.bias", &[NUM_CLASSES])?;
    let w = g.initializer("fc.weight", &fc_w.shape, &fc_w.data);
    let b = g.initializer("fc.bias", &fc_b.shape, &fc_b.data);
    g.named_node(
        "Gemm",
        vec![FEATURES_NAME.to_string(), w, b],
        LOGITS_NAME,
        vec![attr_int("transB", 1)],
    );

    let mut output = vec![
        value_info(FEATURES_NAME, &[None, Some(EMBEDDING_DIM)]),
        value_info(LOGITS_NAME, &[None, Some(NUM_CLASSES)]),
    ];
    if spec.feature_map {
        let s = spec.map_side();
        output.push(value_info(
            FEATURE_MAP_NAME,
            &[None, Some(EMBEDDING_DIM), Some(s), Some(s)],
        ));
    }
    let graph = GraphProto {
        node: g.nodes,
        name: "efficientnet_lite0".into(),
        initializer: g.initializers,
        input: vec![value_info(
            INPUT_NAME,
            &[None, Some(3), Some(spec.input_size), Some(spec.input_size)],
        )],
        output,
    };
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "imgsearch".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "EfficientNet-Lite0 (ImageNet), BatchNorm folded, TF SAME padding; \
             input (N,3,{0},{0}) as (pixel-127)/128 RGB",
            spec.input_size
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
    };
    Ok(model.encode_to_vec())
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
    clip_bounds: Option<(String, String)>,
}

impl GraphBuilder {
    fn fresh(&mut self, op: &str) -> String {
        self.counter += 1;
        format!("{}_{}", op.to_lowercase(), self.counter)
    }

    fn node(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(op);
        self.named_node(op, inputs, &out, attrs);
        out
    }

    fn named_node(&mut self, op: &str, inputs: Vec<String>, out: &str, attrs: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.to_string()],
            name: out.to_string(),
            op_type: op.to_string(),
            attribute: attrs,
        });
    }

    fn initializer(&mut self, name: &str, shape: &[usize], data: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: ELEM_FLOAT,
            name: name.to_string(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    fn relu6(&mut self, x: &str) -> String {
        let (lo, hi) = match &self.clip_bounds {
            Some(b) => b.clone(),
            None => {
                let b = (
                    self.initializer("relu6.min", &[], &[0.0]),
                    self.initializer("relu6.max", &[], &[6.0]),
                );
                self.clip_bounds = Some(b.clone());
                b
            }
        };
        self.node("Clip", vec![x.to_string(), lo, hi], vec![])
    }

    /// Conv (no bias in the checkpoint) followed by BatchNorm, emitted as one Conv with
    /// the BatchNorm folded in: w' = w·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε).
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        ckpt: &Checkpoint,
        x: &str,
        size: usize,
        conv: &str,
        bn: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<(String, usize), WeightsError> {
        let w = ckpt.get_shaped(
            &format!("{conv}.weight"),
            &[cout, cin / groups, kernel, kernel],
        )?;
        let bn_tensor = |name: &str| ckpt.get_shaped(&format!("{bn}.{name}"), &[cout]);
        let (gamma, beta, mean, var) = (
            bn_tensor("weight")?,
            bn_tensor("bias")?,
            bn_tensor("running_mean")?,
            bn_tensor("running_var")?,
        );
        let (w, b) = fold_batch_norm(w, gamma, beta, mean, var);
        let (before, after, out) = same_padding(size, kernel, stride);
        let wn = self.initializer(&format!("{conv}.weight"), &w.shape, &w.data);
        let bn_ = self.initializer(&format!("{conv}.bias"), &[cout], &b);
        let (before, after) = (before as i64, after as i64);
        let y = self.node(
            "Conv",
            vec![x.to_string(), wn, bn_],
            vec![
                attr_ints("kernel_shape", &[kernel as i64, kernel as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
                attr_ints("pads", &[before, before, after, after]),
                attr_ints("dilations", &[1, 1]),
                attr_int("group", groups as i64),
            ],
        );
        Ok((y, out))
    }
}

fn fold_batch_norm(
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
) -> (Tensor, Vec<f32>) {
    let cout = w.shape[0];
    let per_out = w.numel() / cout;
    let mut folded = w.clone();
    let mut bias = Vec::with_capacity(cout);
    for o in 0..cout {
        // f64 keeps the fold itself from adding rounding error.
        let scale = gamma.data[o] as f64 / (var.data[o] as f64 + BN_EPS as f64).sqrt();
        for v in &mut folded.data[o * per_out..(o + 1) * per_out] {
            *v = (*v as f64 * scale) as f32;
        }
        bias.push((beta.data[o] as f64 - mean.data[o] as f64 * scale) as f32);
    }
    (folded, bias)
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: 2,
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: ELEM_FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Some(v) => Dimension {
                                dim_value: Some(*v as i64),
                                dim_param: None,
                            },
                            None => Dimension {
                                dim_value: None,
                                dim_param: Some("batch".into()),
                            },
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // 224, k3, s2 → out 112, total pad 1: nothing before, one after.
        assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
        // 112, k3, s1 → out 112, pad 1/1.
        assert_eq!(same_padding(112, 3, 1), (1, 1, 112));
        // 28, k5, s2 → out 14, total pad 3: 1 before, 2 after.
        assert_eq!(same_padding(28, 5, 2), (1, 2, 14));
        // 14, k5, s1 → 2/2.
        assert_eq!(same_padding(14, 5, 1), (2, 2, 14));
        // 1x1 convs never pad.
        assert_eq!(same_padding(7, 1, 1), (0, 0, 7));
    }

    #[test]
    fn map_side_follows_the_input() {
        assert_eq!(GraphSpec::default().map_side(), 7);
        let spec = |input_size| GraphSpec {
            input_size,
            feature_map: true,
        };
        assert_eq!(spec(320).map_side(), 10);
        assert_eq!(spec(300).map_side(), 10);
        assert_eq!(spec(448).map_side(), 14);
    }

    #[test]
    fn batch_norm_fold_is_exact_for_simple_values() {
        let w = Tensor {
            shape: vec![2, 1, 1, 1],
            data: vec![1.0, 2.0],
        };
        let t = |v: [f32; 2]| Tensor {
            shape: vec![2],
            data: v.to_vec(),
        };
        // var + eps = 4 → scale = gamma / 2.
        let (fw, fb) = fold_batch_norm(
            &w,
            &t([2.0, 4.0]),
            &t([1.0, 0.0]),
            &t([3.0, 1.0]),
            &t([4.0 - BN_EPS, 4.0 - BN_EPS]),
        );
        assert_eq!(fw.data, vec![1.0, 4.0]);
        assert_eq!(fb, vec![1.0 - 3.0, -2.0]);
    }
}
