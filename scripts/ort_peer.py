# ONNX Runtime's own speed on a graph: batch-1 inference through its Python API.
# Usage: python -c "$(cat ort_peer.py)" MODEL.onnx THREADS SECONDS  → {"img_per_s": X}
import json, sys, time

import numpy as np
import onnxruntime as ort

model, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
x = ((np.arange(3 * 224 * 224) * 7919) % 255).astype(np.float32).reshape(1, 3, 224, 224) / 128.0 - 1.0
for _ in range(10):
    sess.run(None, {"input": x})
n, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    sess.run(None, {"input": x})
    n += 1
print(json.dumps({"img_per_s": n / (time.perf_counter() - start)}))
