# Shared by the bench scripts (sourced after they define `die` and `PY`).

# A free TCP port on 127.0.0.1.
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT WHAT [PID] [IP]: waits up to 120 s for a listener on IP:PORT (IP 127.0.0.1 by
# default); dies at once if PID (the program that should listen) exits first. It asks the kernel
# (`ss`) instead of connecting: Transmission 3.00 refuses a peer connection from an address whose
# previous connection it has not yet seen closed, so a probe would cost the next client from
# 127.0.0.1 its first connection.
wait_port() {
  local ip=${4:-127.0.0.1}
  for _ in $(seq 1200); do
    if command -v ss >/dev/null; then
      [[ -n $(ss -Hltn "src $ip and sport = :$1") ]] && return 0
    else
      (exec 3<>"/dev/tcp/$ip/$1") 2>/dev/null && return 0
    fi
    [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null && die "$2 exited before listening on $ip:$1"
    sleep 0.1
  done
  die "$2 is not listening on $ip:$1"
}
