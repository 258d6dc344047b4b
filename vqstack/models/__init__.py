"""Network definitions used by the deep extractors (built without downloading anything).

Why a package of its own: the extractors in :mod:`vqstack.extract` own sampling and I/O; the
networks here are plain ``torch.nn`` modules, each built offline, with any conversion from an
official checkpoint layout kept beside them (e.g. :mod:`vqstack.models.checkpoints`).
"""
