from __future__ import annotations

from vlserve.tasks.base import InputRules, Task, TaskInput


class OCR(Task):
    name = "ocr"
    light_answer = True  # the text, stripped of a Markdown fence
    summary = "Read all text from images or documents, returned as Markdown with structure kept."
    rules = InputRules(images=(0, 16), documents=(0, 1))
    lane = "batch"
    system_prompt = (
        "You are an OCR engine. Transcribe all text exactly as written, in reading order, as "
        "Markdown: headings as #, lists as -, tables as Markdown tables. Output only the transcription."
    )
    default_instruction = "Transcribe all text as Markdown."
    defaults = {"max_tokens": 2048, "temperature": 0.0}

    def answer(self, text: str, inp: TaskInput) -> str:
        # Models sometimes wrap the whole transcription in a ```markdown fence; the answer is the Markdown.
        stripped = text.strip()
        if stripped.startswith("```") and stripped.endswith("```"):
            stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
            stripped = stripped[:-3].rstrip()
        return stripped
