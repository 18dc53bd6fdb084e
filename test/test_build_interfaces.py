"""scripts/build_interfaces.py --uninstall removes what it deployed, and a tf2_msgs it did not
generate stays."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("build_interfaces", ROOT / "scripts" / "build_interfaces.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("own_tf2", [True, False])
def test_uninstall_removes_the_deployed_packages_and_only_its_own_tf2_msgs(tmp_path, own_tf2):
    bi = _script()
    prefix, site = tmp_path / "prefix", tmp_path / "site"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    ours = [prefix / "lib" / f"lib{bi.PACKAGE}__rosidl_typesupport_c.so", index / bi.PACKAGE, site / bi.PTH_NAME,
            site / bi.HOOK_DIR_NAME / "msg.py", prefix / "share" / bi.PACKAGE / "package.xml"]
    tf2 = [prefix / "lib" / f"lib{bi.TF2}__rosidl_typesupport_c.so", index / bi.TF2,
           prefix / "share" / bi.TF2 / "package.xml", site / bi.TF2 / "msg.py"]
    marker = [site / bi.TF2 / bi.TF2_MARKER] if own_tf2 else []
    for f in ours + tf2 + marker:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    bi.uninstall(prefix, site)
    left = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert left == (set() if own_tf2 else set(tf2))
