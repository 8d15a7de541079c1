/** GraphDef → ONNX ModelProto bytes (protobuf through the `onnx-proto` package). */
import onnxProto from 'onnx-proto';
import { ONNX_TYPE, type Attr, type GraphDef, type InitializerDef, type ValueInfo } from './builder.js';

const { onnx } = onnxProto;

/** Opset 17 has LayerNormalization; com.microsoft brings MultiHeadAttention and Gelu. */
export const OPSET = 17;
const IR_VERSION = 8;

function valueInfo(v: ValueInfo): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: { tensorType: { elemType: ONNX_TYPE[v.type], shape: { dim: v.shape.map((d) => ({ dimValue: d })) } } },
  };
}

function attribute(name: string, a: Attr): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('i' in a) return { name, type: T.INT, i: a.i };
  if ('f' in a) return { name, type: T.FLOAT, f: a.f };
  if ('s' in a) return { name, type: T.STRING, s: new TextEncoder().encode(a.s) };
  if ('ints' in a) return { name, type: T.INTS, ints: [...a.ints] };
  if ('floats' in a) return { name, type: T.FLOATS, floats: [...a.floats] };
  return { name, type: T.GRAPH, g: graph(a.g) };
}

function initializer(t: InitializerDef): onnxProto.onnx.ITensorProto {
  const base = { name: t.name, dataType: ONNX_TYPE[t.type], dims: [...t.dims] };
  if (t.external) {
    return {
      ...base,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: t.external.file },
        { key: 'offset', value: String(t.external.offset) },
        { key: 'length', value: String(t.external.length) },
      ],
    };
  }
  const d = t.data!;
  return { ...base, rawData: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) };
}

function graph(g: GraphDef): onnxProto.onnx.IGraphProto {
  return {
    name: g.name,
    node: g.nodes.map((n) => ({
      name: n.name,
      opType: n.op,
      domain: n.domain,
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs).map(([k, a]) => attribute(k, a)),
    })),
    input: g.inputs.map(valueInfo),
    output: g.outputs.map(valueInfo),
    initializer: g.initializers.map(initializer),
  };
}

export function serializeModel(g: GraphDef): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: 'todo-sd',
    opsetImport: [
      { domain: '', version: OPSET },
      { domain: 'com.microsoft', version: 1 },
    ],
    graph: graph(g),
  });
  return onnx.ModelProto.encode(model).finish();
}
