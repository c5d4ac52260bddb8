"""Bounds on what workflow authors and callers can make prana do (DESIGN §6).

Nothing a workflow file, a template, an input or an output holds can freeze or
exhaust an engine: each is bounded, with defaults a workflow author never meets by
accident, and a clear error that names the limit when one is met. An engine takes
its limits as ``Engine(limits=prana.Limits(...))``; ``load_workflow`` takes them
too (for YAML).

Templates get a budget of *work*, not of wall-clock time: loop iterations, and the
characters or items of every value they build (each operation is charged the size
of what it makes). That bounds how long a render can take on any machine, and it is
deterministic: a template fails the same way everywhere, and the state machine,
which renders parameters, still reads no clock (decision 0037).
"""

from __future__ import annotations

import attrs

# The deepest nesting the store's JSON writer (orjson) takes, less a margin for the
# records that hold the data.
MAX_JSON_DEPTH = 250


@attrs.frozen(kw_only=True)
class Limits:
    """The bounds an engine keeps (see the module's docstring).

    Templates: ``template_iterations`` loop iterations per rendering (over every
    ``{% for %}``, nested or not); ``template_work`` characters and items built in all
    by one rendering (every string, list or object an operation makes counts);
    ``template_value`` characters (or items) of any one value a template builds;
    ``integer_digits`` decimal digits of an integer a template computes.

    Data: ``json_depth`` levels of nesting and ``json_size`` bytes (about, as JSON) of
    one input, output, resume data or variable set.

    Workflow files: ``yaml_values`` values a YAML document may expand to through its
    aliases (``&a`` and ``*a``).

    The audit trail: ``recorded_params`` bytes of JSON of the rendered parameters each
    node run keeps (the start of their text past it; 0 keeps none).
    """

    template_iterations: int = 100_000
    template_work: int = 50_000_000
    template_value: int = 10_000_000
    integer_digits: int = 4_300
    json_depth: int = 100
    json_size: int = 64 * 1024 * 1024
    yaml_values: int = 1_000_000
    recorded_params: int = 4096

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(Limits):
            value = getattr(self, field.name)
            least = 0 if field.name == "recorded_params" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                what = "a whole number, 0 or more" if least == 0 else "a positive integer"
                raise ValueError(f"Limits.{field.name} must be {what}, not {value!r}")
        if self.json_depth > MAX_JSON_DEPTH:
            raise ValueError(
                f"Limits.json_depth can be at most {MAX_JSON_DEPTH} (the store's JSON writer "
                f"nests no deeper), not {self.json_depth}"
            )


DEFAULT_LIMITS = Limits()
