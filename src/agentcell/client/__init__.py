"""Python client for API v1 (DESIGN §7), sync (``Client``) and async (``AsyncClient``).

    with Client() as c:                  # AGENTCELL_URL, AGENTCELL_API_KEY (ClientSettings)
        print(c.exec("print(6*7)").stdout)
        for event in c.exec_stream("for i in range(3): print(i)"):
            print(event)                 # StdoutEvent / StderrEvent ..., then ExitEvent
        session = c.sessions_create()
        print(c.chat(session.id, "plot sin(x) into plot.png").content)
        for event in c.chat_stream(session.id, "now cos(x)"):
            print(event)                 # ChatAgent / ChatToolCall / ChatToolResult /
                                         # ChatText ..., then ChatDone
        job = c.jobs_run(code="python3 train.py", language="shell", timeout_s=4 * 3600)
        for event in c.jobs_follow(job.id):  # resumes by itself if the connection drops
            print(event)                 # JobLogChunk ..., then JobLogEnd (state, exit_code)
        c.jobs_download(job.id, "train.zip")   # its output folder

Both clients send the same calls (``_http.Api``, each request built once) and differ only in
how they send them (``sync``, ``aio``). An error answer raises the ``AgentcellError`` subclass
named by its ``code`` (with the server's ``status_code``, ``message`` and ``hint``); a server
that does not answer raises ``ServerUnreachable``. Uploads and downloads are streamed in
chunks, never held whole.
"""

from agentcell.client._http import error_from as error_from
from agentcell.client._sse import (
    ChatEvent,
    ExecEvent,
    JobLogEvent,
    LogStreamLost,
    StderrEvent,
    StdoutEvent,
)
from agentcell.client._sse import ServerSentEvent as ServerSentEvent
from agentcell.client._sse import SSEParser as SSEParser
from agentcell.client._sse import chat_event as chat_event
from agentcell.client._sse import exec_event as exec_event
from agentcell.client.aio import AsyncClient
from agentcell.client.sync import Client
from agentcell.errors import ServerUnreachable
from agentcell.errors import error_classes as error_classes
from agentcell.schemas import (
    ChatAgent,
    ChatDone,
    ChatReply,
    ChatText,
    ChatToolCall,
    ChatToolResult,
    ExitEvent,
    JobLogChunk,
    JobLogEnd,
    JobPublic,
    MessagePublic,
    SchedulePublic,
    SessionPublic,
)

__all__ = [
    "AsyncClient",
    "ChatAgent",
    "ChatDone",
    "ChatEvent",
    "ChatReply",
    "ChatText",
    "ChatToolCall",
    "ChatToolResult",
    "Client",
    "ExecEvent",
    "ExitEvent",
    "JobLogChunk",
    "JobLogEnd",
    "JobLogEvent",
    "JobPublic",
    "LogStreamLost",
    "MessagePublic",
    "SchedulePublic",
    "ServerUnreachable",
    "SessionPublic",
    "StderrEvent",
    "StdoutEvent",
]
