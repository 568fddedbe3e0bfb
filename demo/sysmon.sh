#!/bin/bash
# sysmon.sh - the exec plugin's demo: a system monitor.  One JSON line a
# second (each a WebSocket message) with the load average, memory and
# uptime from /proc; the page may send "interval 0.2" .. "interval 10"
# to change the pace.  When the page goes, stdin closes and it exits.
#
#     <Location /monitor>
#         SetHandler websocket-handler
#         WebSocketHandler modules/mod_websocket_exec.so exec_init
#         WebSocketParam command /usr/local/share/mod_websocket/sysmon.sh
#     </Location>

interval=1

meminfo() {
    local key value unit
    while read -r key value unit; do
        case $key in
            MemTotal:) total=$value ;;
            MemAvailable:) available=$value ;;
        esac
    done < /proc/meminfo
}

sample() {
    local one five fifteen procs last up idle
    read -r one five fifteen procs last < /proc/loadavg
    read -r up idle < /proc/uptime
    meminfo
    printf '{"host":"%s","load":[%s,%s,%s],"procs":"%s","mem_total_kib":%s,' \
        "$HOSTNAME" "$one" "$five" "$fifteen" "$procs" "$total"
    printf '"mem_available_kib":%s,"uptime_s":%s,"interval_s":%s,"client":"%s"}\n' \
        "$available" "$up" "$interval" "$REMOTE_ADDR"
}

sample
while :; do
    if read -r -t "$interval" command value; then
        if [ "$command" = interval ]; then
            case $value in
                0.[2-9]|[1-9]|10) interval=$value ;;
                *) echo "interval must be 0.2 to 10 seconds" >&2 ;;
            esac
        fi
    elif [ $? -le 128 ]; then
        exit 0                  # stdin closed: the page is gone
    fi
    sample
done
