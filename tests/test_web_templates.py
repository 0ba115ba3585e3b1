"""The templates of the bridge's pages: they compile, escape what they write, and refuse names
they were not given; the widget's style block is the one its policy allows."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from jinja2 import UndefinedError
from markupsafe import Markup

from bridge.config import WidgetSettings
from bridge.web.templating import environment
from bridge.web.widget import Button, Widget, render


def test_every_template_compiles():
    templates = environment()
    names = templates.list_templates()
    assert {"page.html", "stats.html", "widget.html", "widget.css", "stats.css"} <= set(names)
    for name in names:
        templates.get_template(name)


def test_html_is_escaped_as_before_and_css_is_not():
    templates = environment()
    page = templates.from_string("<p title='{{ v }}'>{{ v }}{{ safe }}</p>")
    written = page.render(v='<a href="x">O\'Neil & co</a>', safe=Markup("<b>kept</b>"))
    escaped = "&lt;a href=&quot;x&quot;&gt;O&#x27;Neil &amp; co&lt;/a&gt;"
    assert written == f"<p title='{escaped}'>{escaped}<b>kept</b></p>"
    assert '"Segoe UI"' in templates.get_template("stats.css").render()


def test_a_name_the_page_was_not_given_is_an_error():
    with pytest.raises(UndefinedError):
        environment().get_template("stats_message.html").render(max_days=365)


def test_the_widget_policy_allows_exactly_its_style_block():
    templates = environment()
    widget = Widget(None, WidgetSettings(), [], templates)
    button = Button("telegram", "https://t.me/b?start=K", "@b", "data:image/png;base64,AA==")
    page = render(templates, "en", "news", "K", [button])
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = widget._headers["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}';" in policy
