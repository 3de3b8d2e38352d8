"""How tests/data/mobilenet_thin_tf.npz was made (TensorFlow is not a posenas dependency; run by hand).

1. The inputs, with posenas (its evaluation letterbox), into inputs.npz:
   images_128: the four shared/data/coco_sample val images as CocoPoseDataset(..., input_size=128) samples;
   images_141: the first two letterboxed at 141 (an odd size: TensorFlow's asymmetric SAME padding);
   ids_128 / ids_141: their COCO image ids.
2. TensorFlow's own output of the graph, in a scratch venv outside the repository:
       python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu numpy
       /tmp/tfenv/bin/python tests/data/make_mobilenet_thin_tf.py \\
           ../shared/data/teachers/mobilenet_thin/graph_opt.pb inputs.npz tests/data/mobilenet_thin_tf.npz
   (made with tensorflow-cpu 2.21.0). The graph gets raw BGR 0-255 NHWC; maps_N holds its
   Openpose/concat_stage7 output transposed to NCHW, float16, beside the inputs.
"""

import sys

import numpy as np
import tensorflow as tf

graph_path, inputs_path, out_path = sys.argv[1:4]
graph_def = tf.compat.v1.GraphDef()
graph_def.ParseFromString(open(graph_path, "rb").read())
graph = tf.Graph()
with graph.as_default():
    tf.import_graph_def(graph_def, name="")
inputs = dict(np.load(inputs_path))
result = dict(inputs)
with tf.compat.v1.Session(graph=graph) as session:
    for key in [k for k in inputs if k.startswith("images_")]:
        bgr = inputs[key][..., ::-1].astype(np.float32)  # RGB uint8 -> the graph's BGR 0-255
        maps = session.run("Openpose/concat_stage7:0", {"image:0": bgr})
        result["maps_" + key.split("_")[1]] = maps.transpose(0, 3, 1, 2).astype(np.float16)
        print(key, maps.shape, float(np.abs(maps).max()))
result["tensorflow_version"] = np.array(tf.__version__)
np.savez_compressed(out_path, **result)
