"""``make bench``: the product's speed and memory measured next to same-run baselines.

See bench/README.md. Entry point: ``python -m bench.run [--quick] [--only a,b]``.
"""
