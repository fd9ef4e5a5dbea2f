"""The benchmark's work as a pyinfra deploy, on every host: exec, put 1 MiB, get 1 MiB, a TCP
probe, an HTTP GET — the same as bench/work.yml. bench/run.py runs it with the inventory it
generates from the lab's (each host's data carries blob, out and http_port).

The probes run on the runner, as pyinfra users write such checks: `python.call` runs a Python
function in the pyinfra process (a gevent greenlet: pyinfra's CLI patches the socket module, so
many hosts' probes wait at once) when the host's turn at that operation comes.
"""

import socket
import urllib.request

from pyinfra import host
from pyinfra.operations import files, python, server


def tcp_probe(address, port):
    with socket.create_connection((address, port), timeout=5):
        pass


def http_get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
        response.read()


name = host.name
address = host.data.ssh_hostname
remote = f"/tmp/pyinfra-bench/{name}/blob.bin"

server.shell(name="uname -a", commands=["uname -a"])
files.put(name="put 1 MiB", src=host.data.blob, dest=remote, force=True)
files.get(name="get 1 MiB", src=remote, dest=f"{host.data.out}/{name}/blob.bin",
          create_local_dir=True, force=True)
python.call(name="tcp probe", function=tcp_probe, address=address, port=host.data.ssh_port)
python.call(name="http get", function=http_get,
            url=f"http://{address}:{host.data.http_port}/health")
