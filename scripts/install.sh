#!/usr/bin/env bash
# Installs esbd, esb, the service SDK (what dropped services compile against), the systemd
# unit, a system user and /etc/esb/server.conf with absolute paths.
#
# Usage: scripts/install.sh [--prefix /usr/local] [--root DIR] [--build-dir DIR] [--no-user]
#   --prefix     where binaries and the SDK go (default /usr/local)
#   --root       install everything under DIR (a staging or test root); paths written into
#                server.conf and the unit include it, so the result runs in place
#   --build-dir  take binaries from this SwiftPM build directory instead of building release
#   --no-user    do not create the 'esb' system user or chown the state directory
# Layout: PREFIX/lib/esb/{esbd,esb,libESBService.so,Modules/}, PREFIX/bin/{esbd,esb} links,
#         /etc/esb/{server.conf,secret.key,admin.password}, /var/lib/esb/{work,pickup,esb.db},
#         /etc/systemd/system/esbd.service
source "$(dirname "$0")/lib.sh"
PREFIX=/usr/local ROOT="" BUILD_DIR="" CREATE_USER=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --root) ROOT=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
        --build-dir) BUILD_DIR=$2; shift 2 ;;
        --no-user) CREATE_USER=0; shift ;;
        *) die "unknown option $1 (see the header of $0)" ;;
    esac
done
cd "$ROOT_DIR"
if [ -z "$BUILD_DIR" ]; then
    scripts/setup --build-only
    say "building release"
    swift build -c release --product esbd
    swift build -c release --product esb
    BUILD_DIR=$(swift build -c release --show-bin-path)
fi
for file in esbd esb libESBService.so Modules/ESBService.swiftmodule; do
    [ -e "$BUILD_DIR/$file" ] || die "$BUILD_DIR/$file is missing: build first"
done

LIB=$ROOT$PREFIX/lib/esb BIN=$ROOT$PREFIX/bin ETC=$ROOT/etc/esb STATE=$ROOT/var/lib/esb
UNIT_DIR=$ROOT/etc/systemd/system DOC=$ROOT$PREFIX/share/doc/esb
say "installing into ${ROOT:-/} (prefix $PREFIX)"
install -d "$LIB/Modules" "$BIN" "$ETC" "$ETC/payloads" "$STATE/work" "$STATE/pickup" "$UNIT_DIR" "$DOC"
# esbd finds the SDK beside itself ($ORIGIN rpath), so binaries live in lib/esb.
install -m 0755 "$BUILD_DIR/esbd" "$BUILD_DIR/esb" "$LIB/"
install -m 0755 "$BUILD_DIR/libESBService.so" "$LIB/"
cp -R "$BUILD_DIR/Modules/ESBService.swiftmodule" "$LIB/Modules/"
for extra in ESBService.swiftdoc ESBService.abi.json ESBService.swiftsourceinfo; do
    [ -e "$BUILD_DIR/Modules/$extra" ] && cp "$BUILD_DIR/Modules/$extra" "$LIB/Modules/"
done
ln -sf "$PREFIX/lib/esb/esbd" "$BIN/esbd"
ln -sf "$PREFIX/lib/esb/esb" "$BIN/esb"
[ -n "$ROOT" ] && { ln -sf "$LIB/esbd" "$BIN/esbd"; ln -sf "$LIB/esb" "$BIN/esb"; }
install -m 0644 README.md "$DOC/"

SWIFTC=$(command -v swiftc || true)
# Not readlink -f: swiftc is a link to swift-driver, which takes its mode from the name.
# server.conf names the secrets' files and may hold [kvdb] password: not for every user,
# not even while it is being written.
umask 027
if [ ! -f "$ETC/server.conf" ]; then
    say "writing $ETC/server.conf"
    sed -e "s|^work_dir = ./work|work_dir = $STATE/work|" \
        -e "s|^secret_key_path = ./secret.key|secret_key_path = $ETC/secret.key|" \
        -e "s|^password_file = ./admin.password|password_file = $ETC/admin.password|" \
        -e "s|^path = ./esb.db|path = $STATE/esb.db|" \
        -e "s|^pickup_dir = ./pickup|pickup_dir = $STATE/pickup|" \
        -e "s|^swiftc = swiftc|swiftc = ${SWIFTC:-swiftc}|" \
        -e "s|file://config/payloads/hello.json|file://$ETC/payloads/hello.json|" \
        server.conf.example > "$ETC/server.conf.new"
    mv "$ETC/server.conf.new" "$ETC/server.conf"
    install -m 0644 config/payloads/hello.json "$ETC/payloads/"
fi
chmod 0640 "$ETC/server.conf"
[ -f "$ETC/secret.key" ] || "$LIB/esb" create-key "$ETC/secret.key"
if [ ! -f "$ETC/admin.password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$ETC/admin.password")
    say "admin password is in $ETC/admin.password"
fi
sed -e "s|@PREFIX@|$ROOT$PREFIX|g" -e "s|@ETC@|$ETC|g" -e "s|@STATE@|$STATE|g" \
    config/esbd.service > "$UNIT_DIR/esbd.service"

if [ "$CREATE_USER" -eq 1 ]; then
    id esb >/dev/null 2>&1 || useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin esb
    chown -R esb:esb "$STATE"
    chown root:esb "$ETC/secret.key" "$ETC/admin.password" "$ETC/server.conf"
    chmod 0640 "$ETC/secret.key" "$ETC/admin.password"
    command -v systemctl >/dev/null && [ -z "$ROOT" ] && systemctl daemon-reload || true
fi
"$LIB/esb" config check "$ETC/server.conf"
say "installed; start with: systemctl enable --now esbd"
