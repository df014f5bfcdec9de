# Makes libtorrent-2.0.8-seeder.bin: what a libtorrent seeder sends on one connection.
# Run with Debian's /usr/bin/python3 (python3-libtorrent) in an empty directory; loopback only.
# See README.md beside this file.
import libtorrent as lt, os, socket, struct, time, random, hashlib
random.seed(7)
os.makedirs('data', exist_ok=True)
with open('data/file.bin','wb') as f: f.write(bytes(random.getrandbits(8) for _ in range(40000)))
fs = lt.file_storage(); lt.add_files(fs, 'data/file.bin')
ct = lt.create_torrent(fs, 16384); lt.set_piece_hashes(ct, 'data')
t = ct.generate(); tb = lt.bencode(t)
info = lt.torrent_info(tb)
ih = info.info_hash().to_bytes()
ses = lt.session({'listen_interfaces':'127.0.0.1:46881','enable_dht':False,'enable_lsd':False,'enable_upnp':False,'enable_natpmp':False,
  'in_enc_policy':2,'out_enc_policy':2,'allow_multiple_connections_per_ip':True})
h = ses.add_torrent({'ti':info,'save_path':'data'})
for _ in range(50):
    if h.status().is_seeding: break
    time.sleep(0.1)
print('seeding', h.status().is_seeding)
s = socket.create_connection(('127.0.0.1',46881))
s.sendall(b'\x13BitTorrent protocol' + bytes([0,0,0,0,0,0x10,0,0x04]) + ih + b'-BT0001-000000000000')
def ext(eid, payload): s.sendall(struct.pack('>IBB', len(payload)+2, 20, eid) + payload)
ext(0, b'd1:md11:ut_metadatai3e6:ut_pexi1eee')
buf = b''; s.settimeout(2)
def recv_some():
    global buf
    try:
        d = s.recv(65536)
        buf += d
    except socket.timeout: pass
t0=time.time()
while time.time()-t0 < 3: recv_some()
open('raw1.bin','wb').write(buf)
ext(2, b'd8:msg_typei0e5:piecei0ee')
ext(2, b'd8:msg_typei0e5:piecei5ee')
s.sendall(b'\x00\x00\x00\x01\x02')
buf=b''
t0=time.time()
while time.time()-t0 < 3: recv_some()
s.sendall(struct.pack('>IBIII',13,6,1,0,100))
t0=time.time()
while time.time()-t0 < 2: recv_some()
open('raw2.bin','wb').write(buf)
print(len(buf))
print(len(buf))
