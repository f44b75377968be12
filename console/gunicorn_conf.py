"""gunicorn's settings for the console's web process, shared by ``flask up`` and the Procfile
(``gunicorn -c python:console.gunicorn_conf``); the bind address is given on the command line.
"""

from __future__ import annotations

from console.config import instance_path, instance_socket, make_instance_folder

workers = 2
threads = 4
accesslog = "-"
logger_class = "console.access_log.RedactingLogger"
# The console's pollers and API clients reuse a connection every 2 s; at gunicorn's default of
# 2 s the server closes it just as a request goes out on it, and that request is reset.
keepalive = 75
# gunicorn's default control socket is one fixed path in the home folder, so two stacks on one
# machine would take it from each other (and the first to stop removes the other's).
control_socket = str(instance_socket(str(make_instance_folder(instance_path())), "gunicorn.ctl"))
