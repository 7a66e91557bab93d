from __future__ import annotations

from vlserve.tasks.base import InputRules, Task


class DocAnalyze(Task):
    name = "doc_analyze"
    summary = "Analyse PDF documents (pages rendered and read together) or page images."
    rules = InputRules(images=(0, 16), documents=(0, 2))
    lane = "batch"
    system_prompt = (
        "You are a document analyst. The pages of the document are given in order. Read all of "
        "them, including tables and figures, and answer the user's request. Without a specific "
        "request, summarise the document: its purpose, structure, key figures and conclusions, as "
        "Markdown."
    )
    default_instruction = "Summarise this document."
    defaults = {"max_tokens": 1024, "temperature": 0.0}
