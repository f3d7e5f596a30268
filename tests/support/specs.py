"""What a spec's refusal says: the SpecError a test expects, as text with file:line."""

from __future__ import annotations

import pytest

from zerodown.core.errors import SpecError
from zerodown.spec.load import parse_model
from zerodown.spec.model import Spec

HEAD = "service: shop\nrun: {command: [app]}\n"  # lines 1-2: what follows starts at line 3


def refusal(text: str) -> str:
    """The refusal of the spec `HEAD + text`, read as zerodown.yaml."""
    with pytest.raises(SpecError) as caught:
        parse_model(HEAD + text, Spec, file="zerodown.yaml")
    return str(caught.value)
