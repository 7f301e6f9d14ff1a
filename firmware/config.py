"""The device's configuration: config.json, validated, with a last good copy, so a bad file
never bricks the board.

    cfg, problem = config.load()   # at boot; report `problem` (one line) when not None

`load()` always returns a usable configuration: config.json when it is valid (saved as the
last good copy, config.good.json, when it differs from it: written to a .tmp file, then
renamed over it); else the last good copy; else the built-in defaults. `problem` says what
was wrong and which of the three is in use, naming the field:
    config.json: metrics[1].period_ms: must be an integer 100..3600000, got 'fast'
    (using config.good.json)
With a valid config.json, `problem` is None unless the last good copy could not be saved
("config.good.json: not saved (OSError 28)"). A .tmp copy left by a cut during that save
is the last resort before the defaults.

The configuration is a plain dict tree with every field present (omitted ones get their
default; unknown keys are errors, so a misspelt key is caught, not ignored):

    {"device": str,             ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$; default "ringtail-" + hex
                                of machine.unique_id(), or "ringtail-dev" without one
     "gateway": {"host": str (1..253 printable ASCII, no spaces; "127.0.0.1"),
                 "port": int (1..65535; 5683)},
     "batch_s": int (1..1800; 60)       a batch is closed and stored to flash at this age
     "health_s": int (5..86400; 60)     health report period
     "ring_policy": "drop_oldest" | "refuse_new" ("drop_oldest")
     "coap": {"ack_timeout_ms": int (100..60000; 2000), "max_retransmit": int (0..10; 4),
              "block_bytes": 16 | 32 | 64 | 128 | 256 | 512 | 1024 (1024),
              "backoff_max_s": int (1..3600; 60)},
     "wifi": {"ssid": str (0..32 chars; ""), "key": str (0..64 chars; "")},
     "metrics": [1..16 of                                        (default: DEFAULT_METRICS)
        {"name": str (^[a-z][a-z0-9_]{0,31}$, unique; required),
         "source": one of sensor.SOURCES ("sht3x.t", "sht3x.rh"; required),
         "period_ms": int (100..3600000; 1000),
         "deadband": number (0..1000000, in the metric's unit, e.g. 0.05 °C; 0),
         "keep_every": int (1..3600; 1): keep one sample in N; above 1 only if not critical,
         "critical": bool (true),
         "anomaly_z": number (0..1000; 0 turns the anomaly rule off for the metric),
         -- added by validation, for the sampler's integer arithmetic:
         "exp": int, the source's decimal exponent (readings are value * 10**exp),
         "deadband_units": int, deadband in reading units (0.05 °C, exp 2 -> 5)}],
     "anomaly": {"alpha": number (0 < alpha <= 1; 0.05) EWMA weight,
                 "warmup": int (1..10000; 30) samples before the rule may trip}}

Integers must be JSON integers (1000, not 1000.0); true/false are not numbers. Numbers
must be finite. A deadband is rounded to the source's resolution, and a positive one that
rounds to 0 is an error rather than a silently disabled deadband. JSON itself cannot say
whether a key was given twice: the last one wins (json.loads on both Pythons).

Plain Python (json and os only, sources from sensor.py) so that tests/firmware/
test_config_fuzz.py can run validate() under CPython against generated trees.
"""

import json
import os

from sensor import SOURCES

CONFIG_PATH = "config.json"
GOOD_PATH = "config.good.json"
MAX_BYTES = 8192  # a config.json larger than this is refused before parsing (64 KB heap)

RING_POLICIES = ("drop_oldest", "refuse_new")
BLOCK_SIZES = (16, 32, 64, 128, 256, 512, 1024)  # CoAP Block1 sizes, RFC 7959 SZX 0..6
MAX_METRICS = 16
DEADBAND_MAX = 1000000
_SMALL_INT_MAX = (1 << 30) - 1  # the 32-bit ports' largest small int: no heap per compare

# Humidity is context for temperature, not an alarm input: it is not critical (it may be
# thinned), and changes under 0.25 %RH (an eighth of the SHT31's ±2 %RH accuracy) are not
# worth a record. Temperature keeps every sample.
DEFAULT_METRICS = (
    {"name": "temperature", "source": "sht3x.t", "deadband": 0, "critical": True},
    {"name": "humidity", "source": "sht3x.rh", "deadband": 0.25, "critical": False},
)

_TOP_KEYS = (
    "device",
    "gateway",
    "batch_s",
    "health_s",
    "ring_policy",
    "coap",
    "wifi",
    "metrics",
    "anomaly",
)
_GATEWAY_KEYS = ("host", "port")
_COAP_KEYS = ("ack_timeout_ms", "max_retransmit", "block_bytes", "backoff_max_s")
_WIFI_KEYS = ("ssid", "key")
_METRIC_KEYS = (
    "name",
    "source",
    "period_ms",
    "deadband",
    "keep_every",
    "critical",
    "anomaly_z",
)
_ANOMALY_KEYS = ("alpha", "warmup")

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _LOWER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_REST = _ALNUM + "_-"
_NAME_REST = _LOWER + "0123456789_"
_SHOW_MAX = 32  # characters of a bad value quoted in a message
_BIG = 10**15  # integers beyond this are described, not printed
_ALPHA_RANGE = "must be a number 0 < alpha <= 1"


class ConfigError(ValueError):
    """The one thing wrong with a configuration; the message starts with the field."""


def default_device():
    try:
        import machine

        uid = machine.unique_id()
    except Exception:  # ImportError under CPython; the unix port has no unique_id
        return "ringtail-dev"
    return "ringtail-" + "".join(f"{b:02x}" for b in uid)


def _show(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return repr(v) if len(v) <= _SHOW_MAX else repr(v[:_SHOW_MAX]) + "..."
    if isinstance(v, int) and not -_BIG < v < _BIG:
        return "a very large integer"
    if isinstance(v, (int, float)):
        return repr(v)
    return "a " + type(v).__name__


def _at(path, key):
    if not isinstance(key, str):
        raise ConfigError((path or "(top level)") + ": keys must be strings")
    if not _ident(key, _ID_REST, _ID_REST, _SHOW_MAX):
        key = _show(key)  # quoted and escaped: a key may hold anything, a newline too
    return path + "." + key if path else key


def _fail(path, what, v):
    raise ConfigError(path + ": " + what + ", got " + _show(v))


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    # v - v is 0 for every finite number, nan for nan and the infinities
    return (_is_int(v) or isinstance(v, float)) and v - v == 0


def _obj(v, path, keys):
    if not isinstance(v, dict):
        _fail(path or "(top level)", "must be an object", v)
    for k in v:
        p = _at(path, k)
        if k not in keys:
            raise ConfigError(p + ": unknown key (expected one of " + ", ".join(keys) + ")")
    return v


def _section(top, key, keys):
    v = top.get(key)
    if v is None and key not in top:
        return {}
    return _obj(v, key, keys)


def _int(s, key, path, lo, hi, default):
    v = s.get(key, default)
    if not _is_int(v) or v < lo or v > hi:
        _fail(_at(path, key), f"must be an integer {lo}..{hi}", v)
    return v


def _num(s, key, path, lo, hi, default, what):
    v = s.get(key, default)
    if not _is_num(v) or v < lo or v > hi:
        _fail(_at(path, key), what, v)
    return v


def _text(s, key, path, default, maxlen):
    v = s.get(key, default)
    if not isinstance(v, str) or len(v) > maxlen:
        _fail(_at(path, key), f"must be a string of at most {maxlen} characters", v)
    return v


def _one_of(v, path, choices):
    if not isinstance(v, (str, int)) or isinstance(v, bool) or v not in choices:
        _fail(path, "must be one of " + ", ".join(repr(c) for c in choices), v)
    return v


def _ident(v, first, rest, maxlen):
    if not isinstance(v, str) or not 1 <= len(v) <= maxlen or v[0] not in first:
        return False
    for ch in v:
        if ch not in rest:
            return False
    return True


def _resolution(exp):
    return "0." + "0" * (exp - 1) + "1" if exp > 0 else "1" + "0" * -exp


def _metric(m, path, sources, seen):
    m = _obj(m, path, _METRIC_KEYS)
    if "name" not in m:
        raise ConfigError(path + ".name: required")
    name = m["name"]
    if not _ident(name, _LOWER, _NAME_REST, 32):
        _fail(path + ".name", "must match ^[a-z][a-z0-9_]{0,31}$", name)
    if name in seen:
        _fail(path + ".name", f"duplicate of metrics[{seen.index(name)}]", name)
    seen.append(name)
    if "source" not in m:
        raise ConfigError(path + ".source: required")
    source = m["source"]
    if not isinstance(source, str) or source not in sources:
        _fail(path + ".source", "must be one of " + ", ".join(sorted(sources)), source)
    exp = sources[source]
    period = _int(m, "period_ms", path, 100, 3600000, 1000)
    deadband = _num(m, "deadband", path, 0, DEADBAND_MAX, 0, "must be a number 0..1000000")
    keep = _int(m, "keep_every", path, 1, 3600, 1)
    critical = m.get("critical", True)
    if not isinstance(critical, bool):
        _fail(path + ".critical", "must be true or false", critical)
    if critical and keep != 1:
        _fail(
            path + ".keep_every", "must be 1 for a critical metric (thin only non-critical)", keep
        )
    z = _num(m, "anomaly_z", path, 0, 1000, 0, "must be a number 0..1000 (0: off)")
    dint = round(deadband * 10**exp)
    if deadband and not dint:
        _fail(
            path + ".deadband",
            "below the resolution of " + source + " (" + _resolution(exp) + ")",
            deadband,
        )
    if dint > _SMALL_INT_MAX:
        _fail(path + ".deadband", "too large for " + source + "'s integer readings", deadband)
    return {
        "name": name,
        "source": source,
        "period_ms": period,
        "deadband": deadband,
        "keep_every": keep,
        "critical": critical,
        "anomaly_z": z,
        "exp": exp,
        "deadband_units": dint,
    }


def _validate(tree, sources):
    top = _obj(tree, "", _TOP_KEYS)
    device = top.get("device")
    if device is None and "device" not in top:
        device = default_device()
    if not _ident(device, _ALNUM, _ID_REST, 64):
        _fail("device", "must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", device)
    gw = _section(top, "gateway", _GATEWAY_KEYS)
    host = gw.get("host", "127.0.0.1")
    ok = isinstance(host, str) and 1 <= len(host) <= 253
    if ok:
        for ch in host:
            if not "!" <= ch <= "~":
                ok = False
                break
    if not ok:
        _fail("gateway.host", "must be a host name or address (printable, no spaces)", host)
    coap = _section(top, "coap", _COAP_KEYS)
    wifi = _section(top, "wifi", _WIFI_KEYS)
    anomaly = _section(top, "anomaly", _ANOMALY_KEYS)
    metrics = top.get("metrics")
    if metrics is None and "metrics" not in top:
        metrics = list(DEFAULT_METRICS)
    if not isinstance(metrics, list) or not 1 <= len(metrics) <= MAX_METRICS:
        _fail("metrics", f"must be a list of 1..{MAX_METRICS} metrics", metrics)
    seen: list = []
    cfg_metrics = [_metric(m, f"metrics[{i}]", sources, seen) for i, m in enumerate(metrics)]
    alpha = _num(anomaly, "alpha", "anomaly", 0, 1, 0.05, _ALPHA_RANGE)
    if alpha == 0:
        _fail("anomaly.alpha", _ALPHA_RANGE, alpha)
    return {
        "device": device,
        "gateway": {"host": host, "port": _int(gw, "port", "gateway", 1, 65535, 5683)},
        "batch_s": _int(top, "batch_s", "", 1, 1800, 60),  # window offsets are int32 µs
        "health_s": _int(top, "health_s", "", 5, 86400, 60),
        "ring_policy": _one_of(top.get("ring_policy", "drop_oldest"), "ring_policy", RING_POLICIES),
        "coap": {
            "ack_timeout_ms": _int(coap, "ack_timeout_ms", "coap", 100, 60000, 2000),
            "max_retransmit": _int(coap, "max_retransmit", "coap", 0, 10, 4),
            "block_bytes": _one_of(coap.get("block_bytes", 1024), "coap.block_bytes", BLOCK_SIZES),
            "backoff_max_s": _int(coap, "backoff_max_s", "coap", 1, 3600, 60),
        },
        "wifi": {
            "ssid": _text(wifi, "ssid", "wifi", "", 32),
            "key": _text(wifi, "key", "wifi", "", 64),
        },
        "metrics": cfg_metrics,
        "anomaly": {"alpha": alpha, "warmup": _int(anomaly, "warmup", "anomaly", 1, 10000, 30)},
    }


def validate(tree, sources=SOURCES):
    """(config, None) for a valid tree (json.loads output), defaults filled in; else
    (None, "field: what is wrong, got value"). Raises nothing else, whatever the tree."""
    try:
        return _validate(tree, sources), None
    except ConfigError as e:
        return None, str(e)


def defaults(sources=SOURCES):
    """The built-in configuration (what an empty JSON object gives)."""
    return validate({}, sources)[0]


def _read(path):
    """(bytes, None), or (None, why not)."""
    try:
        size = os.stat(path)[6]
        if size > MAX_BYTES:
            return None, f"larger than {MAX_BYTES} bytes"
        # read(n) allocates n bytes up front: ask for the file's size, not the limit
        with open(path, "rb") as f:
            return f.read(size), None
    except OSError as e:
        return None, "missing" if e.errno == 2 else f"unreadable (OSError {e.errno})"
    except MemoryError:
        return None, "too large for the free heap"


def parse(data, sources=SOURCES):
    """validate() for the bytes of a config file."""
    if not data.strip():
        return None, "empty"
    try:
        tree = json.loads(data)
    except Exception:  # ValueError (syntax, encoding), MemoryError, RecursionError (depth)
        return None, "not valid JSON"
    try:
        return validate(tree, sources)
    except Exception as e:  # MemoryError on a board; a validator bug must not brick it either
        return None, "could not be checked (" + type(e).__name__ + ")"


def _save(path, data):
    """Replace `path` by `data` atomically where rename is (littlefs, POSIX); a cut leaves
    the old file or the complete .tmp, which load() also tries."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except OSError as e:
        return f"{path}: not saved (OSError {e.errno})"
    return None


def load(path=CONFIG_PATH, good_path=GOOD_PATH, sources=SOURCES):
    """(config, problem): see the module docstring. Never raises."""
    data, why = _read(path)
    if data is not None:
        cfg, why = parse(data, sources)
        if cfg is not None:
            if _read(good_path)[0] != data:
                return cfg, _save(good_path, data)
            return cfg, None
    problem = path + ": " + str(why)
    for p in (good_path, good_path + ".tmp"):
        data, why = _read(p)
        if data is None:
            continue
        cfg, why = parse(data, sources)
        if cfg is not None:
            return cfg, problem + " (using " + p + ")"
        problem += "; " + p + ": " + str(why)
    return defaults(sources), problem + " (no usable last good copy: using built-in defaults)"
