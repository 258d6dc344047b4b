"""Stage 1: decode videos once, sample views, extract features (see ``vqstack.extract.pipeline``)."""
