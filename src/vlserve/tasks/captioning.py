from __future__ import annotations

from vlserve.tasks.base import InputRules, Task


class Captioning(Task):
    name = "captioning"
    light_answer = True  # the text, stripped
    summary = "Describe images in one or a few sentences (text may set the style)."
    rules = InputRules(images=(1, 16))
    system_prompt = (
        "You are a professional image captioner. Describe the main subject, the setting, notable "
        "details, colours and any visible text, in fluent natural language. Do not invent details."
    )
    default_instruction = "Write a detailed caption for the image."
    defaults = {"max_tokens": 200, "temperature": 0.0}
