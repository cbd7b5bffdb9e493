"""The client matrix's scenario for redis-py, run through kvproxy by
proxy/clients_python_test.go:
    python3 matrix.py <host:port> [2|3]
Prints "ok" and exits 0 when every step passed."""
import sys
import time

import redis

host, port = sys.argv[1].rsplit(":", 1)
kwargs = {"host": host, "port": int(port), "decode_responses": True}
if len(sys.argv) > 2:
    kwargs["protocol"] = int(sys.argv[2])
client = redis.Redis(**kwargs)
keys = [f"py:k{i}" for i in range(12)]

assert client.set("py:a", "v")
assert client.get("py:a") == "v"
client.mset({k: str(i) for i, k in enumerate(keys)})
assert client.mget(keys + ["py:none"]) == [str(i) for i in range(len(keys))] + [None]
pipe = client.pipeline(transaction=False)
for k in keys:
    pipe.incr(k)
assert pipe.execute() == [i + 1 for i in range(len(keys))]
tx = client.pipeline(transaction=True)
tx.set("{py}t", "1")
tx.incr("{py}t")
assert tx.execute() == [True, 2]
assert client.hset("py:h", mapping={"f": "1"}) == 1
assert client.hgetall("py:h") == {"f": "1"}

sub = client.pubsub()
sub.subscribe("py:ch")
assert sub.get_message(timeout=5)["type"] == "subscribe"
message = None
for _ in range(100):
    client.publish("py:ch", "hi")
    message = sub.get_message(timeout=0.05)
    if message:
        break
assert message and message["data"] == "hi", message
sub.close()

client.rpush("py:list", "x")
assert client.blpop(["py:list"], timeout=1) in (("py:list", "x"), ["py:list", "x"])
found = set(client.scan_iter(match="py:*", count=100))
assert found == set(keys) | {"py:a", "py:h"}, found
assert client.eval("return redis.call('get', KEYS[1])", 1, "py:a") == "v"
client.close()
print("ok")
