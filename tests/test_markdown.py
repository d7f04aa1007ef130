"""Code fences as chalicelib.slack.markdown reads them (the cutting itself is tested in test_stream*)."""

from __future__ import annotations

import pytest

from chalicelib.slack.markdown import closing_fence, open_fence


def test_open_fence() -> None:
    assert open_fence("text\n```python\nx = 1\n") == "```python"
    assert open_fence("```python\nx = 1\n```\n") is None
    assert open_fence("```python  \nx") == "```python"  # trailing spaces dropped
    assert open_fence("1. step\n   ```sh\n   ls\n") == "   ```sh"  # inside a list item
    assert open_fence("~~~\n```\nstill code\n") == "~~~"  # backticks do not close tildes
    assert open_fence("````\n```\n") == "````"  # a shorter fence does not close a longer one
    assert open_fence("```\n````\n") is None  # a longer one does
    assert open_fence("```\n``` not a close\n") == "```"
    assert open_fence("```\n```  \n") is None  # trailing whitespace still closes
    assert open_fence("inline ```x``` and ```y```\n") is None
    assert open_fence("```x```\n") is None  # a backtick info string may not hold backticks
    assert open_fence("~~~ `x`\n") == "~~~ `x`"  # a tilde fence's may
    assert open_fence("ends with an opening\n```js") == "```js"  # an unfinished last line counts
    assert open_fence("") is None


def test_closing_fence() -> None:
    assert closing_fence("```python") == "```"
    assert closing_fence("  ~~~~ yaml") == "~~~~"
    with pytest.raises(ValueError):
        closing_fence("python")
