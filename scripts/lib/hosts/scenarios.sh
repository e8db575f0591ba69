# shellcheck shell=bash
# shellcheck disable=SC2154 # hosts_cmd, loadtest, out, ...: set by the script that sources this
# The partition scenarios, sourced by scripts/bench-hosts.sh and scripts/hosts-test.sh (the
# CI runs scenario b): one sale under load against the edge, a cut mid-sale, the heal, and
# the verdict of every buyer's answer against the store.
#
# The caller sets: hosts_cmd (array: scripts/hosts.sh with its options), loadtest (its path),
# out (reports), work (scratch: buyers files, which can be large), token (admin),
# run_s (length of a run), cut_at_s (seconds from the start to the cut), and say/die;
# optionally cut_s_override (seconds every cut lasts, instead of each scenario's own).
#
#   run_scenario X   a..e (see scripts/bench-hosts.sh); writes out/partition-X.json (.md,
#                    -timeline.svg with the cut and the heal marked), out/partition-X-verdict.json
#                    (scripts/lib/hosts/verdict.py), for b out/partition-b-evidence.json
#                    (what app1's worker held, what the brokers redelivered, what app2's
#                    worker settled meanwhile), for d out/partition-d-gate.tsv (fe1's gate).
#                    Returns verdict.py's status: 0 when consistent and both goals are met.

scenario_edge=http://edge:5000

# mark FILE TEXT: a marker at this instant, for loadtest --marks-file.
mark() { echo "$(date +%s.%N) $2" >>"$1"; }

on_client() { "${hosts_cmd[@]}" exec client "$@"; }

# redelivered_total: deliveries of messages that had been delivered before, summed over
# the nodes that answer (RabbitMQ's global counters, on each node's Prometheus endpoint).
redelivered_total() {
    local node total=0 value
    for node in rmq1 rmq2 rmq3; do
        value="$(on_client curl -s --max-time 2 "http://$node:15692/metrics" 2>/dev/null \
            | awk '/^rabbitmq_global_messages_redelivered_total/ {s += $2} END {print s + 0}')" || value=0
        total=$((total + ${value%.*}))
    done
    echo "$total"
}

# settled_by HOST: requests the worker of HOST has settled (its own metrics).
settled_by() {
    on_client curl -s --max-time 2 "http://$1:3100/metrics" 2>/dev/null \
        | awk '/^flashsale_worker_requests_total/ {s += $2} END {print s + 0}'
}

# gate_sampler FILE: fe1's gate every 0.5 s (epoch, state, event link), until killed.
gate_sampler() {
    local file="$1"
    printf 'epoch_s\tstate\tevent_link\n' >"$file"
    while :; do
        on_client curl -s --max-time 1 http://fe1:5000/sale 2>/dev/null | python3 -c '
import json, sys, time
gate = json.load(sys.stdin).get("gate", {})
print("%.3f" % time.time(), gate.get("state"), gate.get("event_link"), sep="\t")' >>"$file" 2>/dev/null || true
        sleep 0.5
    done
}

# sale_field FIELD: that field of the sale, as the edge answers GET /sale ('' if no answer).
sale_field() {
    on_client curl -s --max-time 2 "$scenario_edge/sale" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" 2>/dev/null || true
}

# wait_for_reset GENERATION [sold_out]: until the load tester has reset the sale (a newer
# generation), and with sold_out until that sale is sold out too: its clock starts then.
wait_for_reset() {
    local before="$1" deadline=$((SECONDS + 60)) now
    while :; do
        now="$(sale_field generation)"
        if [[ "$now" =~ ^[0-9]+$ ]] && ((now > before)); then
            [[ "${2:-}" != sold_out || "$(sale_field sold_out)" == True ]] && return 0
        fi
        ((SECONDS < deadline)) || die "the load tester did not reset the sale within 60 s"
        sleep 0.2
    done
}

run_scenario() {
    local s="$1" route=mq cut_s=10 stock=1000000 extra=() label="partition-$1"
    case "$s" in
        a|b) ;;
        c) route=http cut_s=5 ;;
        d) route=http stock=100 extra=(--sold-out-first) ;;
        e) route=http ;;
        *) die "no scenario '$s' (a..e)" ;;
    esac
    cut_s="${cut_s_override:-$cut_s}"
    local marks="$work/$label-marks.txt" buyers="$work/$label-buyers.jsonl"
    rm -f "$marks" "$buyers"
    say "($s) $label: /$route/buy, c = 100, ${run_s} s, cut for ${cut_s} s about ${cut_at_s} s in"
    local generation leader=""
    generation="$(sale_field generation)"
    [[ "$generation" =~ ^[0-9]+$ ]] || die "the edge does not answer GET /sale"
    # Asked before the load starts: RabbitMQ's CLI takes a core for a second or two, which
    # would show on the timeline as a dip before the cut.
    [[ "$s" == a ]] && leader="$("${hosts_cmd[@]}" leader buy_requests)"
    on_client "$loadtest" run "$scenario_edge/$route/buy" -c 100 -t "${run_s}s" \
        --admin-token "$token" --stock "$stock" --strategy conditional --label "$label" \
        --out "$out" --marks-file "$marks" --buyers-out "$buyers" -q "${extra[@]}" &
    local load=$! sampler=""
    # The run's clock starts once the sale is reset (and, for d, sold out).
    if [[ "$s" == d ]]; then wait_for_reset "$generation" sold_out; else wait_for_reset "$generation"; fi
    sleep "$cut_at_s"
    case "$s" in
        a)
            "${hosts_cmd[@]}" cut "$leader"
            mark "$marks" "cut $leader (the request queue's leader) from every host"
            ;;
        b)
            # Cut from db first: the worker stalls inside a batch it holds unacknowledged.
            # Then from everyone, well before that stalled store call times out (5 s), which
            # would answer the batch with errors instead of leaving it to the brokers.
            local redelivered_before settled_before held
            redelivered_before="$(redelivered_total)"
            settled_before="$(settled_by app2)"
            "${hosts_cmd[@]}" cut app1 --from db
            mark "$marks" "cut app1 from db"
            sleep 0.5
            held="$("${hosts_cmd[@]}" unacked app1)"
            "${hosts_cmd[@]}" cut app1
            mark "$marks" "cut app1 from every host (its worker holds $held)"
            ;;
        c)
            "${hosts_cmd[@]}" cut db
            mark "$marks" "cut db from every host"
            ;;
        d)
            gate_sampler "$out/$label-gate.tsv" &
            sampler=$!
            "${hosts_cmd[@]}" cut fe1 --from rmq1,rmq2,rmq3
            mark "$marks" "cut fe1 from rmq1, rmq2, rmq3"
            ;;
        e)
            "${hosts_cmd[@]}" cut app1
            mark "$marks" "cut app1 (a backend and a worker) from every host"
            ;;
    esac
    sleep "$cut_s"
    if [[ "$s" == b ]]; then
        local redelivered_after settled_after
        redelivered_after="$(redelivered_total)"
        settled_after="$(settled_by app2)"
    fi
    "${hosts_cmd[@]}" heal
    mark "$marks" "heal"
    local status=0
    wait "$load" || status=$?
    if [[ -n "$sampler" ]]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
    fi
    ((status == 0 || status == 3)) || die "$label: the load run failed (exit $status)"
    if [[ "$s" == b ]]; then
        printf '{"held_unacked": %s, "redelivered_during_cut": %s, "app2_settled_during_cut": %s}\n' \
            "$held" "$((redelivered_after - redelivered_before))" \
            "$((settled_after - settled_before))" >"$out/$label-evidence.json"
    fi
    # The store after the heal, read on db, not through the services.
    "${hosts_cmd[@]}" orders >"$work/$label-orders.tsv"
    local verdict=0
    python3 "$(dirname "${BASH_SOURCE[0]}")/verdict.py" "$out/$label.json" "$buyers" \
        "$work/$label-orders.tsv" --cut-s "$cut_s" --out "$out/$label-verdict.json" \
        >/dev/null || verdict=$?
    ((verdict <= 1)) || die "$label: verdict.py could not read the reports"
    return "$verdict"
}
