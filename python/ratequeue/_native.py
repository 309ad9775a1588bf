"""ctypes declarations for libratequeue: every function gets argtypes and restype.

The library is found, in order, from $RATEQUEUE_LIBRARY, next to this package,
in the meson build tree of a source checkout, and through the dynamic
linker's search path (where `meson install` puts it: libratequeue.so.0).
"""
import ctypes
import os
import pathlib

EXPECTED_MAJOR = 0  # RQ_VERSION_MAJOR this package is written for

_HERE = pathlib.Path(__file__).resolve().parent


def _candidates():
    env = os.environ.get("RATEQUEUE_LIBRARY")
    if env:
        yield pathlib.Path(env)
    yield _HERE / "libratequeue.so"
    root = _HERE.parent.parent
    for build in ("build", "build-release"):
        yield root / build / "src" / "libratequeue.so"


def _load():
    env = os.environ.get("RATEQUEUE_LIBRARY")
    if env and not pathlib.Path(env).is_file():
        # Named but not there: an error, not a silent fall back to another library.
        raise OSError("RATEQUEUE_LIBRARY=%s: no such file (point it at libratequeue.so, or unset it to use "
                      "the library next to this package or on the linker's path)" % env)
    tried = []
    for path in _candidates():
        tried.append(str(path))
        if path.exists():
            return ctypes.CDLL(str(path))
    tried.append("libratequeue.so.%d (ld.so search path)" % EXPECTED_MAJOR)
    try:
        return ctypes.CDLL("libratequeue.so.%d" % EXPECTED_MAJOR)
    except OSError:
        pass
    raise OSError(
        "libratequeue.so not found (tried: %s); build it with 'bash scripts/test' "
        "or set RATEQUEUE_LIBRARY" % ", ".join(tried))


class Limit(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint32), ("cost", ctypes.c_uint32), ("amount", ctypes.c_uint64),
                ("period_ns", ctypes.c_uint64), ("burst", ctypes.c_uint64)]


class PermitStruct(ctypes.Structure):
    _fields_ = [("opaque", ctypes.c_uint64 * 4)]


class TicketStruct(ctypes.Structure):
    _fields_ = [("opaque", ctypes.c_uint64 * 4)]


class WaitInfo(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("reserved", ctypes.c_uint32), ("predicted_wait_ns", ctypes.c_int64)]


class OpenOptions(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("max_resources", ctypes.c_uint32),
                ("queue_slots", ctypes.c_uint32), ("max_processes", ctypes.c_uint32),
                ("lease_ttl_ms", ctypes.c_uint32), ("redis_url", ctypes.c_char_p)]


LIMIT_RATE, LIMIT_CONCURRENCY = 1, 2
COST_REQUEST, COST_LOAD = 0, 1
DEFINE_REPLACE, DEFINE_LOCAL, DEFINE_LOCAL_SHARE = 1, 2, 4
OPEN_GROUP = 1

lib = _load()
_c_client_p = ctypes.c_void_p

lib.rq_version.argtypes = []
lib.rq_version.restype = ctypes.c_int
lib.rq_layout_version.argtypes = []
lib.rq_layout_version.restype = ctypes.c_int
lib.rq_open_ex.argtypes = [ctypes.c_char_p, ctypes.POINTER(OpenOptions), ctypes.POINTER(_c_client_p)]
lib.rq_open_ex.restype = ctypes.c_int
lib.rq_close.argtypes = [_c_client_p]
lib.rq_close.restype = None
lib.rq_define.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.POINTER(Limit), ctypes.c_size_t, ctypes.c_uint32]
lib.rq_define.restype = ctypes.c_int
lib.rq_describe.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.POINTER(Limit), ctypes.c_size_t,
                            ctypes.POINTER(ctypes.c_size_t)]
lib.rq_describe.restype = ctypes.c_int
lib.rq_acquire.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int64, ctypes.POINTER(PermitStruct)]
lib.rq_acquire.restype = ctypes.c_int
lib.rq_release.argtypes = [_c_client_p, ctypes.POINTER(PermitStruct)]
lib.rq_release.restype = ctypes.c_int
lib.rq_enqueue.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(TicketStruct)]
lib.rq_enqueue.restype = ctypes.c_int
lib.rq_wait.argtypes = [_c_client_p, ctypes.POINTER(TicketStruct), ctypes.c_int64, ctypes.POINTER(PermitStruct)]
lib.rq_wait.restype = ctypes.c_int
lib.rq_cancel.argtypes = [_c_client_p, ctypes.POINTER(TicketStruct)]
lib.rq_cancel.restype = ctypes.c_int
lib.rq_acquire_ex.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int64,
                              ctypes.POINTER(PermitStruct), ctypes.POINTER(WaitInfo)]
lib.rq_acquire_ex.restype = ctypes.c_int
lib.rq_predict_wait.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_int64)]
lib.rq_predict_wait.restype = ctypes.c_int
lib.rq_settle.argtypes = [_c_client_p, ctypes.POINTER(PermitStruct), ctypes.c_uint64]
lib.rq_settle.restype = ctypes.c_int
lib.rq_penalize.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.c_int64]
lib.rq_penalize.restype = ctypes.c_int
lib.rq_observe.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64]
lib.rq_observe.restype = ctypes.c_int
lib.rq_strerror.argtypes = [ctypes.c_int]
lib.rq_strerror.restype = ctypes.c_char_p
lib.rq_remote_error.argtypes = [_c_client_p, ctypes.c_char_p, ctypes.c_size_t]
lib.rq_remote_error.restype = ctypes.c_size_t
lib.rq_errname.argtypes = [ctypes.c_int]
lib.rq_errname.restype = ctypes.c_char_p

_version = lib.rq_version()
if _version // 10000 != EXPECTED_MAJOR:
    raise ImportError("libratequeue version %d.%d.%d is not compatible with this package (major %d)" % (
        _version // 10000, _version // 100 % 100, _version % 100, EXPECTED_MAJOR))
VERSION = "%d.%d.%d" % (_version // 10000, _version // 100 % 100, _version % 100)
