# Shared by the bench scripts (sourced after they define `die` and `PY`).

# A free TCP port on 127.0.0.1.
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT WHAT [PID]: waits up to 120 s for a listener on 127.0.0.1:PORT; dies at once if
# PID (the program that should listen) exits first.
wait_port() {
  for _ in $(seq 1200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null && die "$2 exited before listening on 127.0.0.1:$1"
    sleep 0.1
  done
  die "$2 is not listening on 127.0.0.1:$1"
}
