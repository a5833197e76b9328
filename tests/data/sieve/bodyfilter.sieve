require ["body", "fileinto"];
if body :text :contains ["unsubscribe", "newsletter"] { fileinto "News"; }
