require ["vacation", "variables"];
if header :matches "subject" "*" { set "s" "${1}"; }
vacation :days 3 :subject "Re: ${s}" "I am away until Monday.";
