"""ForceCommand mode reads only root's policy files (chown: root)."""

from __future__ import annotations

import os

import pytest

from diag_wrapper.model import InsecurePolicy
from diag_wrapper.policy import load


@pytest.mark.parametrize("mode, owner, ok", [(0o644, 0, True), (0o444, 0, True), (0o664, 0, False),
                                             (0o646, 0, False), (0o644, 65534, False)])
def test_forcecommand_loads_only_root_owned_policies(tmp_path, mode, owner, ok):
    base = tmp_path / "base.toml"
    base.write_text("[commands.uptime]\n")
    top = tmp_path / "top.toml"
    top.write_text('include = ["base.toml"]\n')
    for f in (base, top):
        f.chmod(0o644)
    base.chmod(mode)  # the include, not the file named on the command line
    os.chown(base, owner, 0)
    load(str(top))  # check/lint/help: anyone's policy, nothing runs
    if ok:
        load(str(top), root_only=True)
    else:
        with pytest.raises(InsecurePolicy) as e:
            load(str(top), root_only=True)
        assert "base.toml" in str(e.value) and "chmod go-w" in str(e.value)
