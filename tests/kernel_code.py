"""Code the tests run in a kernel, shared by several modules."""

#: opens a comm from the kernel and sends two messages on it; the cell's value is its id
OPEN_KERNEL_COMM = """
from comm import create_comm
c = create_comm(target_name="probe", data={"x": 1})
c.send({"n": 1}); c.send({"n": 2})
c.comm_id
"""

#: registers target "echo": every message to it comes straight back, buffers included
ECHO_TARGET = """
def _echo_target(comm, msg):
    @comm.on_msg
    def _echo(m):
        comm.send({"echo": m["content"]["data"]}, buffers=m["buffers"])
from comm import get_comm_manager
get_comm_manager().register_target("echo", _echo_target)
"""

#: opens comm `c` of `{target}` from the kernel and records its on_close calls in `closed`
OPEN_WATCHED_COMM = """
from comm import create_comm, get_comm_manager
closed = []
c = create_comm(target_name="{target}", data={{}})
c.on_close(lambda msg: closed.append(msg["content"]["comm_id"]))
"""

#: true in the kernel once `c` of OPEN_WATCHED_COMM was closed there (its on_close ran)
KERNEL_SAW_CLOSE = "closed == [c.comm_id] and c.comm_id not in get_comm_manager().comms"
