import os
import pathlib
import sys
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


@pytest.fixture
def segment():
    """A fresh segment name for one test; its file is removed afterwards."""
    name = "rqpytest-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
    yield name
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass
