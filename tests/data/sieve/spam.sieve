require ["fileinto", "relational", "comparator-i;ascii-numeric", "imap4flags"];
if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "5" {
    addflag "$Junk";
    fileinto "Junk";
} elsif header :contains "X-Spam-Flag" "YES" {
    discard;
}
