#!/bin/busybox sh
# /init of the pyv86 default guest: bring up eth0 with DHCP, ping the gateway, power off.
# Every line the tests look for starts with "pyv86-guest:".
/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin /tmp /etc
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "pyv86-guest: init started"
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  echo "pyv86-guest: eth0 $(cat /sys/class/net/eth0/address)"
  if udhcpc -i eth0 -n -q -f -t 5 -T 3 -s /etc/udhcpc.script; then
    . /tmp/lease
    echo "pyv86-guest: dhcp lease $ip router $router"
    if ping -c 3 -W 3 "$router"; then
      echo "pyv86-guest: gateway replied"
    else
      echo "pyv86-guest: gateway did not reply"
    fi
  else
    echo "pyv86-guest: dhcp failed"
  fi
else
  echo "pyv86-guest: no eth0"
fi
if grep -q pyv86.shell /proc/cmdline; then
  echo "pyv86-guest: shell (exit to power off)"
  setsid cttyhack sh
fi
echo "pyv86-guest: powering off"
poweroff -f
