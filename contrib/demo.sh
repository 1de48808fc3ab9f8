#!/bin/sh
# Builds outsftphook and shows it at work without any server: a throw-away reprepro
# repository whose outhook pushes to a local directory through OpenSSH's sftp-server.
# Needs: cargo, reprepro, dpkg-deb, openssh-sftp-server.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --manifest-path "$top/Cargo.toml"
bin="$top/target/debug/outsftphook"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/repo/conf" "$work/mirror" "$work/pkg/DEBIAN"
cat > "$work/repo/conf/distributions" <<CONF
Codename: bookworm
Suite: stable
Components: main
Architectures: amd64
CONF
echo "outhook $bin" > "$work/repo/conf/options"
echo "sftpcommand /usr/lib/openssh/sftp-server -d $work/mirror" > "$work/repo/conf/outsftphook.conf"
printf 'Package: hello-demo\nVersion: 1.0\nArchitecture: amd64\nSection: misc\nPriority: optional\nMaintainer: Demo <demo@example.org>\nDescription: demo package\n' > "$work/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/pkg" "$work/hello-demo_1.0_amd64.deb" >/dev/null
echo "+ reprepro includedeb bookworm hello-demo_1.0_amd64.deb   (runs outsftphook as its outhook)"
reprepro -b "$work/repo" includedeb bookworm "$work/hello-demo_1.0_amd64.deb"
echo "+ the mirror now holds:"
(cd "$work/mirror" && find . -type f | sort)
echo "+ and the journal of the outlog, now renamed .done:"
cat "$work"/repo/logs/*.done
