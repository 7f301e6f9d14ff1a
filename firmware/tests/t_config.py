"""config.json: a valid file is used and kept as the last good copy; every kind of bad file
falls back to that copy (or to the built-in defaults) with one line naming the field; the
validator answers garbage with a message, never an exception."""

import gc
import json
import os

import config
import mptest
from mptest import check, metric

GOOD = {
    "device": "kitchen-1",
    "gateway": {"host": "192.168.1.10", "port": 5683},
    "batch_s": 30,
    "ring_policy": "refuse_new",
    "metrics": [
        {"name": "temperature", "source": "sht3x.t", "deadband": 0.05},
        {"name": "humidity", "source": "sht3x.rh", "critical": False, "keep_every": 10},
    ],
}


def _paths(name):
    d = mptest.tmpdir() + "/cfg-" + name
    try:
        os.mkdir(d)
    except OSError:
        pass
    for f in ("config.json", "config.good.json", "config.good.json.tmp"):
        try:
            os.remove(d + "/" + f)
        except OSError:
            pass
    return d + "/config.json", d + "/config.good.json"


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _with(change):
    """GOOD with `change(tree)` applied, as JSON text."""
    tree = json.loads(json.dumps(GOOD))
    change(tree)
    return json.dumps(tree)


def _set(path, value):
    """A change that sets tree[path[0]][path[1]]... = value."""

    def change(tree):
        t = tree
        for k in path[:-1]:
            t = t[k]
        t[path[-1]] = value

    return change


def test_valid_file_is_used_and_kept_as_last_good():
    path, good = _paths("valid")
    text = json.dumps(GOOD)
    _write(path, text)
    cfg, problem = config.load(path, good)
    check(problem is None, problem)
    check(cfg["device"] == "kitchen-1" and cfg["batch_s"] == 30, cfg)
    check(cfg["gateway"] == {"host": "192.168.1.10", "port": 5683}, cfg["gateway"])
    check(cfg["ring_policy"] == "refuse_new" and cfg["health_s"] == 60, cfg)
    check(
        cfg["coap"]
        == {"ack_timeout_ms": 2000, "max_retransmit": 4, "block_bytes": 1024, "backoff_max_s": 60},
        cfg["coap"],
    )
    check(cfg["wifi"] == {"ssid": "", "key": ""}, cfg["wifi"])
    check(cfg["anomaly"] == {"alpha": 0.05, "warmup": 30}, cfg["anomaly"])
    t, h = cfg["metrics"]
    check(
        t
        == {
            "name": "temperature",
            "source": "sht3x.t",
            "period_ms": 1000,
            "deadband": 0.05,
            "keep_every": 1,
            "critical": True,
            "anomaly_z": 0,
            "exp": 2,
            "deadband_units": 5,
        },
        t,
    )
    check(h["keep_every"] == 10 and not h["critical"] and h["deadband_units"] == 0, h)
    check(_bytes(good) == text.encode(), "last good copy is not config.json's bytes")
    check(not _exists(good + ".tmp"), "the .tmp file was left behind")


def test_last_good_is_rewritten_only_when_it_changed():
    path, good = _paths("rewrite")
    saves = []
    real = config._save

    def counting(p, data):
        saves.append(p)
        return real(p, data)

    config._save = counting
    try:
        _write(path, json.dumps(GOOD))
        for _ in range(3):
            check(config.load(path, good)[1] is None, "load failed")
        check(len(saves) == 1, "rewritten although unchanged", len(saves))
        _write(path, _with(_set(["batch_s"], 45)))
        cfg, problem = config.load(path, good)
        check(problem is None and cfg["batch_s"] == 45, problem)
        check(len(saves) == 2, "not rewritten after a change", len(saves))
        _write(path, "{broken")
        config.load(path, good)
        check(len(saves) == 2, "a bad file was saved as good")
        check(json.loads(_bytes(good))["batch_s"] == 45, "last good copy changed")
    finally:
        config._save = real


def _bad():
    """(config.json text, what the problem must say); GOOD is the last good copy each time.
    Built when needed: the texts together would crowd the 64 KB heap all along."""
    return (
        (_with(_set(["batch_s"], "60")), "batch_s: must be an integer 1..1800, got '60'"),
        (_with(_set(["batch_s"], True)), "batch_s: must be an integer 1..1800, got true"),
        (_with(_set(["batch_s"], 60.0)), "batch_s: must be an integer 1..1800, got 60.0"),
        (_with(_set(["batch_s"], 0)), "batch_s: must be an integer 1..1800, got 0"),
        (_with(_set(["health_s"], None)), "health_s: must be an integer 5..86400, got null"),
        (
            _with(_set(["metrics", 1, "period_ms"], "fast")),
            "metrics[1].period_ms: must be an integer 100..3600000, got 'fast'",
        ),
        (
            _with(_set(["metrics", 0, "period_ms"], 99)),
            "metrics[0].period_ms: must be an integer 100..3600000, got 99",
        ),
        (_with(_set(["gateway", "port"], 65536)), "gateway.port: must be an integer"),
        (_with(_set(["gateway", "prot"], 1)), "gateway.prot: unknown key"),
        (_with(_set(["batchs"], 60)), "batchs: unknown key"),
        (_with(_set(["metrics", 0, "deadbnad"], 1)), "metrics[0].deadbnad: unknown key"),
        (_with(_set(["metrics", 0, "name"], "Temp")), "metrics[0].name: must match"),
        (_with(_set(["metrics", 0, "name"], "")), "metrics[0].name: must match"),
        (_with(_set(["metrics", 0, "name"], "t" * 33)), "metrics[0].name: must match"),
        (
            _with(_set(["metrics", 1, "name"], "temperature")),
            "metrics[1].name: duplicate of metrics[0], got 'temperature'",
        ),
        (
            _with(_set(["metrics", 0, "keep_every"], 5)),
            "metrics[0].keep_every: must be 1 for a critical metric",
        ),
        (
            _with(_set(["metrics", 1, "critical"], True)),
            "metrics[1].keep_every: must be 1 for a critical metric",
        ),
        (_with(_set(["metrics", 1, "critical"], 0)), "metrics[1].critical: must be true or false"),
        (
            _with(_set(["metrics", 0, "source"], "bme280.t")),
            "metrics[0].source: must be one of sht3x.rh, sht3x.t, got 'bme280.t'",
        ),
        (_with(_set(["metrics", 0, "source"], ["x"])), "metrics[0].source: must be one of"),
        (_with(lambda t: t["metrics"][0].pop("source")), "metrics[0].source: required"),
        (_with(lambda t: t["metrics"][0].pop("name")), "metrics[0].name: required"),
        (_with(_set(["metrics", 0, "deadband"], -1)), "metrics[0].deadband: must be a number"),
        (
            _with(_set(["metrics", 0, "deadband"], 0.001)),
            "metrics[0].deadband: below the resolution of sht3x.t (0.01), got 0.001",
        ),
        (_with(_set(["metrics", 0, "anomaly_z"], "3")), "metrics[0].anomaly_z: must be a number"),
        (_with(_set(["metrics"], [])), "metrics: must be a list of 1..16 metrics, got a list"),
        (_with(_set(["metrics"], {})), "metrics: must be a list of 1..16 metrics, got an object"),
        (
            _with(
                _set(
                    ["metrics"],
                    [{"name": f"m{i}", "source": "sht3x.t"} for i in range(17)],
                )
            ),
            "metrics: must be a list of 1..16 metrics",
        ),
        (_with(_set(["metrics", 0], "temperature")), "metrics[0]: must be an object"),
        (_with(_set(["ring_policy"], "drop_newest")), "ring_policy: must be one of 'drop_oldest'"),
        (_with(_set(["coap"], None)), "coap: must be an object, got null"),
        (_with(_set(["coap"], {"block_bytes": 1000})), "coap.block_bytes: must be one of 16, 32"),
        (_with(_set(["coap"], {"max_retransmit": 11})), "coap.max_retransmit: must be an integer"),
        (_with(_set(["anomaly"], {"alpha": 0})), "anomaly.alpha: must be a number 0 < alpha <= 1"),
        (_with(_set(["anomaly"], {"alpha": 1.5})), "anomaly.alpha: must be a number 0 < alpha"),
        (_with(_set(["anomaly"], {"warmup": 0})), "anomaly.warmup: must be an integer 1..10000"),
        (_with(_set(["device"], "-kitchen")), "device: must match"),
        (_with(_set(["device"], "kitchen 1")), "device: must match"),
        (_with(_set(["device"], "k" * 65)), "device: must match"),
        (_with(_set(["gateway", "host"], "")), "gateway.host: must be a host name"),
        (_with(_set(["gateway", "host"], "my host")), "gateway.host: must be a host name"),
        (_with(_set(["wifi"], {"ssid": 5})), "wifi.ssid: must be a string of at most 32"),
        ('{"batch_s": 1e999}', "batch_s: must be an integer 1..1800, got inf"),
        ('{"anomaly": {"alpha": 1e999}}', "anomaly.alpha: must be a number"),
        ("[1, 2]", "(top level): must be an object, got a list"),
        ('"config"', "(top level): must be an object, got 'config'"),
        ('{"batch_s": 60,', "config.json: not valid JSON"),
        ("", "config.json: empty"),
        ("  \n", "config.json: empty"),
    )


def test_each_kind_of_error_falls_back_to_the_last_good():
    path, good = _paths("errors")
    _write(path, json.dumps(GOOD))
    want, problem = config.load(path, good)
    check(problem is None, problem)
    for text, expect in _bad():
        _write(path, text)
        cfg, problem = config.load(path, good)
        check(cfg == want, "did not fall back for", expect, problem)
        check(problem is not None and expect in problem, "expected", expect, "got", problem)
        check(problem.endswith("(using " + good + ")"), "does not say what it uses", problem)
        check("\n" not in problem, "problem is not one line", problem)
    with open(path, "w") as f:
        f.write("{")
        for _ in range(9):
            f.write(" " * 1000)
        f.write("}")
    cfg, problem = config.load(path, good)
    check(
        cfg == want and problem == path + ": larger than 8192 bytes (using " + good + ")", problem
    )
    os.remove(path)
    cfg, problem = config.load(path, good)
    check(cfg == want and problem == path + ": missing (using " + good + ")", problem)
    check(json.loads(_bytes(good)) == GOOD, "the last good copy changed")


def test_defaults_when_nothing_good_exists():
    path, good = _paths("defaults")
    cfg, problem = config.load(path, good)
    check(cfg == config.defaults(), "not the defaults")
    check(
        problem == path + ": missing (no usable last good copy: using built-in defaults)",
        problem,
    )
    check(cfg["device"] == "ringtail-dev", cfg["device"])  # the unix port has no unique_id
    check(cfg["gateway"] == {"host": "127.0.0.1", "port": 5683} and cfg["batch_s"] == 60, cfg)
    check(cfg["ring_policy"] == "drop_oldest", cfg)
    t, h = cfg["metrics"]
    check(t["name"] == "temperature" and t["source"] == "sht3x.t" and t["critical"], t)
    check(t["deadband_units"] == 0 and t["keep_every"] == 1 and t["anomaly_z"] == 0, t)
    check(h["name"] == "humidity" and h["source"] == "sht3x.rh" and not h["critical"], h)
    check(h["deadband_units"] == 25, h)
    _write(path, "nonsense")
    cfg, problem = config.load(path, good)
    check(cfg == config.defaults() and "not valid JSON (no usable last good" in problem, problem)
    check(not _exists(good), "a bad file became the last good copy")


def test_unusable_last_good_copy_is_named_and_skipped():
    path, good = _paths("badgood")
    _write(path, "{")
    _write(good, '{"batch_s": 0}')
    cfg, problem = config.load(path, good)
    check(cfg == config.defaults(), "used a bad last good copy")
    check(
        problem
        == path
        + ": not valid JSON; "
        + good
        + ": batch_s: must be an integer 1..1800, got 0"
        + " (no usable last good copy: using built-in defaults)",
        problem,
    )


def test_tmp_copy_is_used_when_a_cut_lost_the_good_copy():
    path, good = _paths("tmp")
    _write(good + ".tmp", _with(_set(["batch_s"], 17)))
    cfg, problem = config.load(path, good)
    check(cfg["batch_s"] == 17, "the .tmp copy was not used")
    check(problem == path + ": missing (using " + good + ".tmp)", problem)


def test_omitted_fields_get_their_defaults():
    cfg, problem = config.validate({"metrics": [{"name": "t", "source": "sht3x.t"}]})
    check(problem is None, problem)
    m = cfg["metrics"][0]
    check(m["period_ms"] == 1000 and m["deadband"] == 0 and m["critical"] is True, m)
    check(cfg["coap"]["max_retransmit"] == 4 and cfg["anomaly"]["warmup"] == 30, cfg)
    cfg, problem = config.validate(
        {"metrics": [{"name": "t", "source": "sht3x.rh", "deadband": 12.5}]}
    )
    check(cfg["metrics"][0]["deadband_units"] == 1250, cfg)
    # a source table is a parameter: another board's sensors, another exponent
    cfg, problem = config.validate(
        {"metrics": [{"name": "p", "source": "bmp.p", "deadband": 2}]}, {"bmp.p": 0}
    )
    check(problem is None and cfg["metrics"][0]["deadband_units"] == 2, problem)
    cfg, problem = config.validate({"metrics": [{"name": "p", "source": "bmp.p"}]}, {"bmp.p": -1})
    check(problem is None and cfg["metrics"][0]["exp"] == -1, problem)


_GARBAGE: tuple = (
    None,
    True,
    False,
    0,
    -1,
    3.5,
    1e300,
    10**30,
    "",
    "x" * 100,
    [],
    {},
    [[]],
    {"a": 1},
)


def _positions(tree, path, out):
    out.append(path)
    keys = (
        list(tree) if isinstance(tree, dict) else range(len(tree)) if isinstance(tree, list) else ()
    )
    for k in keys:
        sub = list(path)  # MicroPython has no [*path, k]
        sub.append(k)
        _positions(tree[k], sub, out)


def test_validator_answers_garbage_with_a_message():
    """Every garbage value at every position of a full config (and as the whole tree):
    validate() returns (config, None) or (None, one line), never raises."""
    full = config.defaults()
    for m in full["metrics"]:
        m.pop("exp")
        m.pop("deadband_units")
    where: list = []
    _positions(full, [], where)
    n = 0
    for path in where:
        for g in _GARBAGE:
            tree = json.loads(json.dumps(full))
            if path:
                _set(path, g)(tree)
            else:
                tree = g
            cfg, problem = config.validate(tree)
            ok = (cfg is None and isinstance(problem, str) and "\n" not in problem) or (
                problem is None and isinstance(cfg, dict)
            )
            check(ok, "validate", path, repr(g), cfg, problem)
            n += 1
    metric("garbage_trees_checked", n)


def test_heap_a_load_keeps():
    path, good = _paths("heap")
    _write(path, json.dumps(GOOD))
    gc.collect()
    before = gc.mem_alloc()
    cfg, problem = config.load(path, good)
    gc.collect()
    metric("config_tree_heap_bytes", gc.mem_alloc() - before)
    check(problem is None and cfg is not None, problem)


mptest.run(
    [
        test_valid_file_is_used_and_kept_as_last_good,
        test_last_good_is_rewritten_only_when_it_changed,
        test_each_kind_of_error_falls_back_to_the_last_good,
        test_defaults_when_nothing_good_exists,
        test_unusable_last_good_copy_is_named_and_skipped,
        test_tmp_copy_is_used_when_a_cut_lost_the_good_copy,
        test_omitted_fields_get_their_defaults,
        test_validator_answers_garbage_with_a_message,
        test_heap_a_load_keeps,
    ]
)
