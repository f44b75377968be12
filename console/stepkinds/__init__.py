"""Built-in step kinds (low-code steps): a form of settings that generates a step's code.

- ``references``: the ``{{ input.email }}`` / ``{{ steps.fetch.output.user.id }}`` syntax;
- ``checks``: the value checks of the settings;
- ``kinds``: the settings of each kind, the ``KINDS`` table, ``config_problems``,
  ``normalise_config`` and ``generate_code`` (config → source);
- ``codegen``: the code writers, using the helper code of ``snippets/*.py``.

A value that is exactly one reference becomes that value (any JSON type); inside text it is
replaced by its text. The generated code carries its own small resolver, so "Convert to code"
leaves an ordinary step that works on its own. The editor's WTForms forms for the kinds live in
``console/editor/kind_forms.py``, so this package imports no form library.
"""

from .checks import (
    check_duration,
    check_url,
    describe,
    parse_body,
    parse_headers,
    parse_statuses,
)
from .codegen import helper_functions, python_literal
from .kinds import (
    CODE_LABEL,
    KINDS,
    Setting,
    StepKind,
    config_problems,
    executed_code,
    generate_code,
    normalise_config,
)
from .references import (
    REFERENCE_RE,
    input_reference_warnings,
    reference_problem,
    references,
    step_reference_problems,
)

__all__ = [
    "CODE_LABEL",
    "KINDS",
    "REFERENCE_RE",
    "Setting",
    "StepKind",
    "check_duration",
    "check_url",
    "config_problems",
    "describe",
    "executed_code",
    "generate_code",
    "helper_functions",
    "input_reference_warnings",
    "normalise_config",
    "parse_body",
    "parse_headers",
    "parse_statuses",
    "python_literal",
    "reference_problem",
    "references",
    "step_reference_problems",
]
