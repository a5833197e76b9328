require ["reject", "envelope"];
if envelope :is "from" "" { keep; stop; }
if address :domain "from" ["annoying.example", "worse.example"] {
    reject text:
Please stop writing to me.
..
.
;
}
