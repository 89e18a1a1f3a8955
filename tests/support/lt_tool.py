#!/usr/bin/python3
"""libtorrent-rasterbar helper for ringtorrent's interop tests.

usage:
  lt_tool.py info TORRENT                      JSON: info_hash, name, piece_length, num_pieces, files
  lt_tool.py create DATA OUT PIECE_BYTES [--private] [--tracker URL] [--v1|--v2]
                                               (hybrid v1+v2 unless --v1 or --v2)
  lt_tool.py recheck TORRENT SAVE_PATH         JSON: num_pieces, have (after a full hash check)
  lt_tool.py hashes DIR                        JSON: each DIR/*.torrent's v1 and v2 info-hashes, or the error
  lt_tool.py place TORRENT STREAM SAVE_PATH    write the payload (STREAM: the files back to back)
                                               where libtorrent keeps it; JSON: its paths
  lt_tool.py seed TORRENT SAVE_PATH PORT       seed on 127.0.0.1:PORT; prints READY once seeding;
                                               runs until SIGTERM or stdin closes
  lt_tool.py leech TORRENT SAVE_PATH PORT PEER [RATE]
                                               download from PEER (host:port; "-": only peers
                                               from the torrent's trackers), at most RATE
                                               bytes/s if given; exits 0 when complete
  lt_tool.py magnet URI SAVE_PATH PORT [PEER...]
                                               download a magnet link (metadata from the peers);
                                               exits 0 when complete, printing JSON timings
  lt_tool.py fleet TORRENT SAVE_PATH PORT      peers from the torrent's trackers; prints COMPLETE
                                               when done, then seeds until SIGTERM or stdin closes
  lt_tool.py node PORT --dht BOOTSTRAP        a DHT node with no torrent; prints READY; runs until
                                               SIGTERM or stdin closes
  lt_tool.py join TORRENT SAVE_PATH PORT [--up RATE] [--down RATE] PEER...
                                               take part in the swarm with PEER at the given
                                               rates; prints READY once connected; runs until
                                               SIGTERM or stdin closes

LT_HOST=::1 in the environment puts the session on IPv6 loopback;
LT_ENCRYPTION=forced makes it take MSE/PE with RC4 only, both ways;
LT_ENCRYPTION=disabled, plaintext only.

`seed` and `magnet` take `--dht BOOTSTRAP` (host:port) to run a DHT node
joined through BOOTSTRAP, announcing (seed) or looking up (magnet) the
torrent there every few seconds. The DHT settings allow many nodes on one
address (all of them on 127.0.0.1 in the tests).

Runs on Debian's /usr/bin/python3 with python3-libtorrent (libtorrent 2.0).
"""
import json
import os
import sys
import time

import libtorrent as lt


def info(path):
    ti = lt.torrent_info(path)
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        files.append({
            "path": fs.file_path(i),
            "size": fs.file_size(i),
            "pad": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
        })
    return {
        "info_hash": str(ti.info_hashes().v1),
        "info_hash_v2": str(ti.info_hashes().v2) if ti.info_hashes().has_v2() else None,
        "name": ti.name(),
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        "total_size": ti.total_size(),
        "private": ti.priv(),
        "trackers": [[t.url, t.tier] for t in ti.trackers()],
        "files": files,
    }


def create(data, out, piece_bytes, private, trackers, flags=0):
    fs = lt.file_storage()
    lt.add_files(fs, data)
    ct = lt.create_torrent(fs, int(piece_bytes), flags=flags)
    for tier, url in enumerate(trackers):
        ct.add_tracker(url, tier)
    ct.set_priv(private)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(data)))
    with open(out, "wb") as f:
        f.write(lt.bencode(ct.generate()))


def hashes(directory):
    """Each torrent file in DIRECTORY: its v1 and v2 info-hashes as
    libtorrent loads it (null where it has none), or libtorrent's error."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".torrent"):
            continue
        try:
            ih = lt.torrent_info(os.path.join(directory, name)).info_hashes()
            out[name] = {"v1": str(ih.v1) if ih.has_v1() else None,
                         "v2": str(ih.v2) if ih.has_v2() else None}
        except RuntimeError as e:
            out[name] = {"error": str(e)}
    return out


def place(torrent, stream, save_path):
    """Writes each file's bytes, cut from the torrent's whole byte stream,
    where libtorrent keeps that file (its own mending of odd paths), so
    that it can seed them. Prints libtorrent's paths."""
    fs = lt.torrent_info(torrent).files()
    data = open(stream, "rb").read()
    paths = []
    for i in range(fs.num_files()):
        flags = fs.file_flags(i)
        if flags & (lt.file_storage.flag_pad_file | lt.file_storage.flag_symlink):
            continue
        path = os.path.join(save_path, fs.file_path(i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        off = fs.file_offset(i)
        with open(path, "wb") as f:
            f.write(data[off:off + fs.file_size(i)])
        paths.append(fs.file_path(i))
    return paths


def recheck(torrent, save_path):
    """Adds the torrent over existing data (no resume data, so libtorrent
    hashes every piece) and reports how many pieces it found."""
    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False,
        "alert_mask": int(lt.alert.category_t.status_notification
                          | lt.alert.category_t.error_notification),
    })
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = os.path.abspath(save_path)
    atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    h = ses.add_torrent(atp)
    deadline = time.monotonic() + 300
    checked = False
    while not checked and time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
            elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                print(a.message(), file=sys.stderr)
    st = h.status()
    return {"num_pieces": atp.ti.num_pieces(), "have": st.num_pieces, "checked": checked}


def session(port, dht=None):
    # LT_HOST=::1 puts the session on IPv6 loopback.
    host = os.environ.get("LT_HOST", "127.0.0.1")
    settings = {
        "listen_interfaces": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "outgoing_interfaces": host,
        "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False,
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.enabled),
        "alert_mask": int(lt.alert.category_t.error_notification
                          | lt.alert.category_t.status_notification),
    }
    # LT_ENCRYPTION=forced: MSE with RC4 only, both ways (plaintext peers
    # refused).
    # LT_ENCRYPTION=disabled: plaintext only, both ways.
    if os.environ.get("LT_ENCRYPTION") == "disabled":
        settings["in_enc_policy"] = int(lt.enc_policy.disabled)
    if os.environ.get("LT_ENCRYPTION") == "forced":
        settings.update({
            "out_enc_policy": int(lt.enc_policy.forced),
            "in_enc_policy": int(lt.enc_policy.forced),
            "allowed_enc_level": int(lt.enc_level.rc4),
            "prefer_rc4": True,
        })
    if dht:
        settings.update({
            "enable_dht": True,
            "dht_bootstrap_nodes": dht,
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_ignore_dark_internet": False,
            "dht_prefer_verified_node_ids": False,
        })
    return lt.session(settings)


def add(ses, torrent, save_path):
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = os.path.abspath(save_path)
    atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    return ses.add_torrent(atp)


def errors(ses):
    for a in ses.pop_alerts():
        if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
            print(f"libtorrent: {a.message()}", file=sys.stderr, flush=True)


def seed(torrent, save_path, port, dht=None):
    import select
    import signal
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    ses = session(port, dht)
    h = add(ses, torrent, save_path)
    ready = False
    deadline = time.monotonic() + 600
    last_announce = 0
    while not stop["flag"] and time.monotonic() < deadline:
        errors(ses)
        if not ready and h.status().is_seeding:
            print("READY", flush=True)
            ready = True
        if dht and time.monotonic() - last_announce > 3:
            h.force_dht_announce()
            last_announce = time.monotonic()
        # stdin closing (the test ended) stops us too
        r, _, _ = select.select([sys.stdin], [], [], 0.05)
        if r and not sys.stdin.read(1):
            break


def leech(torrent, save_path, port, peer, rate=0, timeout=300):
    ses = session(port)
    h = add(ses, torrent, save_path)
    if rate:
        h.set_download_limit(rate)
    # PEER "-": peers come from the torrent's trackers alone.
    host, p = peer.rsplit(":", 1) if peer != "-" else (None, 0)
    host = host.strip("[]") if host else None
    deadline = time.monotonic() + timeout
    last_connect = 0
    while time.monotonic() < deadline:
        errors(ses)
        st = h.status()
        if st.is_seeding or st.is_finished:
            print(json.dumps({"downloaded": st.total_payload_download}), flush=True)
            return 0
        if host and time.monotonic() - last_connect > 1 and st.num_peers == 0:
            h.connect_peer((host, int(p)))
            last_connect = time.monotonic()
        time.sleep(0.05)
    print("libtorrent: timed out", file=sys.stderr)
    return 1


def fleet(torrent, save_path, port):
    """A fleet host: peers from the torrent's trackers alone; prints
    COMPLETE once every piece is in, then seeds until SIGTERM or stdin
    closes."""
    import select
    import signal
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    ses = session(port)
    h = add(ses, torrent, save_path)
    done = False
    while not stop["flag"]:
        errors(ses)
        if not done and h.status().is_seeding:
            print("COMPLETE", flush=True)
            done = True
        r, _, _ = select.select([sys.stdin], [], [], 0.05)
        if r and not sys.stdin.read(1):
            break


def node(port, dht):
    import select
    import signal
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    ses = session(port, dht)
    print("READY", flush=True)
    deadline = time.monotonic() + 600
    while not stop["flag"] and time.monotonic() < deadline:
        errors(ses)
        r, _, _ = select.select([sys.stdin], [], [], 0.2)
        if r and not sys.stdin.read(1):
            break


def magnet(uri, save_path, port, peers, timeout=300, dht=None):
    ses = session(port, dht)
    atp = lt.parse_magnet_uri(uri)
    atp.save_path = os.path.abspath(save_path)
    atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    start = time.monotonic()
    h = ses.add_torrent(atp)
    t_meta = t_first = None
    last_connect = 0
    last_lookup = 0
    while time.monotonic() - start < timeout:
        errors(ses)
        st = h.status()
        now = time.monotonic() - start
        if dht and now - last_lookup > 3:
            h.force_dht_announce()
            last_lookup = now
        if t_meta is None and st.has_metadata:
            t_meta = now
        if t_first is None and st.total_payload_download > 0:
            t_first = now
        if st.has_metadata and (st.is_seeding or st.is_finished):
            print(json.dumps({"metadata_seconds": t_meta, "first_byte_seconds": t_first,
                              "seconds": now, "downloaded": st.total_payload_download}),
                  flush=True)
            return 0
        if time.monotonic() - start - last_connect > 1 and st.num_peers == 0:
            for peer in peers:
                host, p = peer.rsplit(":", 1)
                h.connect_peer((host, int(p)))
            last_connect = time.monotonic() - start
        time.sleep(0.01)
    print("libtorrent: timed out", file=sys.stderr)
    return 1


def join(torrent, save_path, port, up, down, peers):
    import select
    import signal
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    ses = session(port)
    h = add(ses, torrent, save_path)
    if up:
        h.set_upload_limit(up)
    if down:
        h.set_download_limit(down)
    ready = False
    last_connect = 0
    deadline = time.monotonic() + 600
    while not stop["flag"] and time.monotonic() < deadline:
        errors(ses)
        st = h.status()
        if not ready and st.num_peers > 0:
            print("READY", flush=True)
            ready = True
        if time.monotonic() - last_connect > 1 and st.num_peers < len(peers):
            for peer in peers:
                host, p = peer.rsplit(":", 1)
                h.connect_peer((host, int(p)))
            last_connect = time.monotonic()
        r, _, _ = select.select([sys.stdin], [], [], 0.05)
        if r and not sys.stdin.read(1):
            break


def flag_value(args, name):
    return args[args.index(name) + 1] if name in args else None


def main():
    a = sys.argv[1:]
    if not a:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    if a[0] == "info":
        print(json.dumps(info(a[1])))
    elif a[0] == "create":
        private = "--private" in a
        trackers = [a[i + 1] for i, x in enumerate(a) if x == "--tracker"]
        flags = 0
        if "--v1" in a:
            flags = lt.create_torrent.v1_only
        elif "--v2" in a:
            flags = lt.create_torrent.v2_only
        create(a[1], a[2], a[3], private, trackers, flags)
    elif a[0] == "hashes":
        print(json.dumps(hashes(a[1])))
    elif a[0] == "place":
        print(json.dumps(place(a[1], a[2], a[3])))
    elif a[0] == "recheck":
        print(json.dumps(recheck(a[1], a[2])))
    elif a[0] == "seed":
        seed(a[1], a[2], int(a[3]), flag_value(a, "--dht"))
    elif a[0] == "fleet":
        fleet(a[1], a[2], int(a[3]))
    elif a[0] == "node":
        node(int(a[1]), flag_value(a, "--dht"))
    elif a[0] == "leech":
        sys.exit(leech(a[1], a[2], int(a[3]), a[4], int(a[5]) if len(a) > 5 else 0))
    elif a[0] == "magnet":
        dht = flag_value(a, "--dht")
        peers = [x for x in a[4:] if x != "--dht" and x != dht]
        sys.exit(magnet(a[1], a[2], int(a[3]), peers, dht=dht))
    elif a[0] == "join":
        rest, up, down = a[4:], 0, 0
        while rest and rest[0] in ("--up", "--down"):
            if rest[0] == "--up":
                up = int(rest[1])
            else:
                down = int(rest[1])
            rest = rest[2:]
        join(a[1], a[2], int(a[3]), up, down, rest)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
