"""The recipe's `chat_template`: a built-in format by name, `auto`, or a literal Jinja template.

mergekit 0.1.5 accepts the names of the templates it bundles (alpaca, chatml, exaone, llama3, mistral),
`auto` (the template most of the parents' tokenizers carry) and any other text that looks like Jinja (at
least 20 characters, with a `{`). The texts below are our own renderings of those public formats, so a
recipe naming one gets that conversation format, not mergekit's exact bytes. The chosen template is set on
the output tokenizer, which transformers saves as `chat_template.jinja`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

AUTO = "auto"

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{% for message in messages %}"
    "{% if loop.first %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

ALPACA = (
    "{% set system = messages | selectattr('role', 'equalto', 'system') | list %}"
    "{% if system %}{{ system[-1]['content'] | trim + '\\n\\n' }}{% endif %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] | trim }}"
    "{% elif message['role'] == 'user_context' %}{{ '### Input:\\n' + message['content'] | trim }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] | trim }}"
    "{% endif %}"
    "{% if not loop.last %}{{ '\\n\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{ '\\n\\n### Response:\\n' }}{% endif %}"
)

MISTRAL = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set turns = messages %}{% endif %}"
    "{{ bos_token }}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant after an optional system message') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.first and system is defined %}"
    "{{ ' [INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' [INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('only user and assistant roles follow the system message') }}"
    "{% endif %}"
    "{% endfor %}"
)

EXAONE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}{{ '[|system|][|endofturn|]\\n' }}{% endif %}"
    "{{ '[|' + message['role'] + '|]' + message['content'] }}"
    "{% if message['role'] == 'user' %}{{ '\\n' }}{% else %}{{ '[|endofturn|]\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "alpaca": ALPACA,
    "chatml": CHATML,
    "exaone": EXAONE,
    "llama3": LLAMA3,
    "mistral": MISTRAL,
}


def is_builtin_name(value: str) -> bool:
    """mergekit looks a value up as a bundled template only when it is short, one line and holds no `{`."""
    return len(value) < 256 and "\n" not in value and "{" not in value and value in BUILTIN_TEMPLATES


def chat_template_problem(value: str) -> str | None:
    """Why `value` is not an acceptable `chat_template`, or None (mergekit's rule: `auto`, a bundled name,
    or a Jinja text of at least 20 characters holding a `{`)."""
    if value == AUTO or is_builtin_name(value):
        return None
    if len(value) < 20 or "{" not in value:
        names = ", ".join(sorted(BUILTIN_TEMPLATES))
        return f"{value!r} is neither `auto`, a built-in template ({names}) nor a Jinja template"
    return None


def resolve_chat_template(value: str, parent_templates: Iterable[str | dict[str, str] | None]) -> str | None:
    """The template text for a recipe's `chat_template`. For `auto`: the template most parents carry
    (compared after stripping; the first seen wins a tie), or None when no parent has one, in which case
    the output tokenizer keeps whatever template it already has."""
    if value != AUTO:
        return BUILTIN_TEMPLATES[value] if is_builtin_name(value) else value
    templates: list[str] = []
    for template in parent_templates:
        if isinstance(template, dict):
            template = template.get("default")
        if template:
            templates.append(template.strip())
    if not templates:
        return None
    return Counter(templates).most_common(1)[0][0]
