"""``sluice split``: cut an ONNX graph into sequential parts that chain as pipeline stages.

- :mod:`.graph`: the graph as plain data (nodes, what the probes saw of every value);
- :mod:`.cuts`: where a cut is valid and what each part runs, takes and hands on (pure);
- :mod:`.cost`: a node's compute estimated from its shapes (pure);
- :mod:`.choose`: the cuts that balance the parts under their limits (pure);
- :mod:`.onnxgraph`: ONNX protos to plain data and plans back to part models;
- :mod:`.measure`: onnxruntime: probing values, timing parts, running them in chain;
- :mod:`.manifest`: the InferencePipeline manifest whose stages chain the parts (pure);
- :mod:`.run`: the whole split, from a model file to parts, measurements and a manifest.
"""
