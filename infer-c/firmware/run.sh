#!/bin/sh
# Builds the C firmware for QEMU's mps2-an386 (Cortex-M4F) with MODEL embedded and runs it; exits
# with the firmware's status (0: every digit classified as the host classifies it).
#
#   infer-c/firmware/run.sh MODEL [DIGITS]      (from anywhere; DIGITS: 200 by default)
#
# Needs arm-none-eabi-gcc (Debian: gcc-arm-none-eabi), qemu-system-arm, python3, a C compiler.
# The host's classes come from the same library built for the host (tests/c/host.c).
set -eu
model=$(realpath "$1")
n=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/c-firmware"
mkdir -p "$out"
cd "$root"

cargo build -q -p infer-c --release
cargo build -q -p infer-c --release --target thumbv7em-none-eabihf --no-default-features
cargo run -q -p trainer -- export "$model" --format c --name mlp -o "$out/mlp.h" >/dev/null

python3 "$here/digits.py" data/mnist "$n" --raw "$out/digits.bin"
cc -std=c99 -O2 -Wall -Wextra -pedantic -Werror -I infer-c/include infer-c/tests/c/host.c \
    target/release/libinfer.a -lpthread -ldl -lm -o "$out/host"
"$out/host" "$model" "$out/digits.bin" "$n" | tail -n +2 >"$out/host.txt"
python3 "$here/digits.py" data/mnist "$n" --expected "$out/host.txt" --header "$out/digits.h"

arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 \
    -std=c99 -O2 -g -Wall -Wextra -pedantic -Werror -ffunction-sections -fdata-sections \
    -I infer-c/include -I "$out" -I "$here" \
    "$here/main.c" "$here/startup.c" target/thumbv7em-none-eabihf/release/libinfer.a \
    -nostdlib -lgcc -T "$here/mps2-an386.ld" -Wl,--gc-sections,--no-warn-execstack \
    -o "$out/firmware.elf"
arm-none-eabi-size "$out/firmware.elf"
exec qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none \
    -semihosting-config enable=on,target=native -kernel "$out/firmware.elf"
