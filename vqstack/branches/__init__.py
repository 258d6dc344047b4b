"""End-to-end branch training: recipes, datasets, models, the trainer, and trained branches as extractors.

A *branch* is a quality model trained on MOS: a head over features cached in the store (head-only
transfer, seconds on a CPU) or a backbone fine-tuned from frames (FAST-VQA fragments, frame-IQA).
``vqstack train --config configs/train/NAME.yml`` runs a recipe; the resulting ``best.pt`` is an
extractor (``vqstack extract --feat branch:PATH``) whose score and pooled features fusion can use.
Nothing is imported here: the submodules load torch only when used.
"""
