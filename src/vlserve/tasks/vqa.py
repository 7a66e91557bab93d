from __future__ import annotations

from vlserve.tasks.base import InputRules, Task


class VQA(Task):
    name = "vqa"
    light_answer = True  # the text, stripped
    summary = "Answer a question about one or more images."
    rules = InputRules(images=(1, 16), text_required=True)
    system_prompt = (
        "You are a meticulous visual question answering assistant. Look carefully at every image, "
        "answer the user's question directly and factually, and say so when the images do not show "
        "enough to answer. Keep the answer concise."
    )
    defaults = {"max_tokens": 256, "temperature": 0.0}
