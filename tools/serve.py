"""Retired: the standard-library example server is replaced by `edgenn serve` (Ray Serve).

    edgenn serve models/lenet5/model.onnx --port 8000            # POST /predict, POST /classify, GET /healthz
    curl --data-binary @digit.png -H 'content-type: image/png' 'localhost:8000/classify?top_k=2'

It answered a PUT with an HTML 501 page and a GET on /classify with 404, refused chunked uploads, and
started on models it could not serve; `edgenn serve` has the same API on an existing engine, with
replicas and dynamic batching (README, "edgenn serve and edgenn score").
"""

import sys

if __name__ == "__main__":
    print("tools/serve.py is retired: run `edgenn serve MODEL` (pip install 'edgenn[serve]')", file=sys.stderr)
    sys.exit(2)
