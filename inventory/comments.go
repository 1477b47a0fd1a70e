package inventory

import "bytes"

// keepTopComments puts the comment block that opens old, the file being
// replaced, in place of the header Marshal wrote at the top of data, so
// notes a user wrote at the top of the file survive butter's rewrite. A
// file with no comment at its top gets butter's header.
func keepTopComments(old, data []byte) []byte {
	top := topComments(old)
	if top == nil {
		return data
	}
	body := bytes.TrimPrefix(data, []byte(header))
	out := make([]byte, 0, len(top)+len(body))
	return append(append(out, top...), body...)
}

// topComments is the run of comment and blank lines data starts with, up
// to its first other line, as it is (blank lines included); nil when that
// run holds no comment.
func topComments(data []byte) []byte {
	end, comment := 0, false
	for rest := data; len(rest) > 0; {
		line, after, complete := bytes.Cut(rest, []byte("\n"))
		text := bytes.TrimSpace(line)
		if !complete || (len(text) > 0 && text[0] != '#') {
			break
		}
		comment = comment || len(text) > 0
		end += len(line) + 1
		rest = after
	}
	if !comment {
		return nil
	}
	return data[:end]
}
