"""The Jinja2 environment of the bridge's pages, with the templates in bridge/web/templates.

Every value an HTML template writes is escaped, so a name from the database cannot become
markup; CSS and JS templates are not escaped, and a value put inside a script would have to go
through `|tojson`. The application builds one environment and hands it to each page.
"""

from __future__ import annotations

from html import escape

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_eval_context, select_autoescape
from jinja2.nodes import EvalContext
from markupsafe import Markup


@pass_eval_context
def _escaped(context: EvalContext, value: object) -> object:
    """A value as an HTML template writes it: escaped unless it is markup already."""
    # Escaped by html.escape, as these pages always were (&quot; and &#x27;, where markupsafe
    # writes &#34; and &#39;): the same to a browser, and the answers keep their bytes.
    if context.autoescape and not hasattr(value, "__html__"):
        return Markup(escape(str(value)))
    return value


def environment() -> Environment:
    """A new environment for the pages' templates."""
    return Environment(
        loader=PackageLoader("bridge.web"),
        autoescape=select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("css", "js"), default=True
        ),
        undefined=StrictUndefined,
        finalize=_escaped,
        # Lines that hold only a {% tag %} leave nothing behind in the page.
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # The templates ship with the package and do not change while the bridge runs.
        auto_reload=False,
    )
