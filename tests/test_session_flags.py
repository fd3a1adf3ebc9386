"""check_session_flags: adapters validate upstream flags through one spine function."""

import pytest

from nda_plugins._session import SessionFlagError, check_session_flags

FLAG_OF = {"transform": "--nda", "weight": "--nda_weight", "mode": "--nda_mode", "seed": "--seed"}


def test_good_flags_pass():
    check_session_flags({"transform": "jigsaw", "weight": 0.5, "mode": "replace"}, FLAG_OF)


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"transform": "jigsaw", "weight": 1.5}, "--nda_weight"),
        ({"transform": "jigsaw", "mode": "sometimes"}, "--nda_mode"),
        ({"transform": "no-such-transform"}, "--nda"),
    ],
)
def test_bad_flag_is_named(kwargs, flag):
    with pytest.raises(SessionFlagError) as info:
        check_session_flags(kwargs, FLAG_OF)
    assert info.value.flag == flag
    assert str(info.value).startswith(f"{flag}: ")
    assert isinstance(info.value, ValueError)
