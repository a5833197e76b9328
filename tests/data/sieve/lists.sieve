require ["fileinto", "variables", "mailbox"];
# one folder per mailing list, created on first use
if header :matches "List-Id" "*<*.*>" {
    set :lower "list" "${2}";
    fileinto :create "Lists/${list}";
    stop;
}
