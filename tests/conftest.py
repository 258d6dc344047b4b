from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from media import make_bad_inputs

    return make_bad_inputs(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (the shared real data sits beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bbb(shared_data: Path) -> Path:
    return shared_data / "videos" / "bigbuckbunny.mp4"


def _refuse_network(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("network access attempted")


@pytest.fixture(scope="module")
def offline_torch(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a whole model-test module (``pytestmark = pytest.mark.usefixtures("offline_torch")``), its
    model fixtures included: no network (any socket connection fails the test: nothing may download)
    and a fixed torch thread count (results are bit-identical at a fixed count). The count is the
    module's ``TORCH_THREADS`` (default 1: on the 2 shared cores spinning OpenMP threads cost more
    than they give)."""
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", _refuse_network)
        torch.set_num_threads(min(getattr(request.module, "TORCH_THREADS", 1), threads))
        yield
    torch.set_num_threads(threads)
