"""Fine-tuning Qwen3-VL checkpoints on conversation data: LoRA (``peft``) or full.

Data path::

    data file ──records──> Conversation ──samples (chat template + media, as served)──> Sample
        ──collate──> batch ──train──> adapter / checkpoint ──adapters.apply_adapter──> served model
                                                             ──evaluate (the real engine)──> scores

Modules import torch, transformers and peft lazily; ``vlserve finetune`` (``cli/finetune.py``) is
the command line over :func:`~vlserve.finetune.train.finetune`,
:func:`~vlserve.finetune.adapters.merge_adapter` and :func:`~vlserve.finetune.evaluate.evaluate`.
Install with ``pip install 'vlserve[finetune]'``.
"""
