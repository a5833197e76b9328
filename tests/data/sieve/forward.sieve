require ["copy", "envelope", "subaddress"];
if envelope :detail "to" "fwd" {
    redirect :copy "alice@elsewhere.example";
}
