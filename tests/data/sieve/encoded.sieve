require ["fileinto", "encoded-character", "comparator-i;unicode-casemap"];
if header :comparator "i;unicode-casemap" :contains "subject" "${unicode:00E9}t${unicode:00C9}" {
    fileinto "Summer";
}
