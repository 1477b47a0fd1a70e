// Package bench holds measurements that need a lab (root): run them with
// chain.sh beside this file. They are figures to read, not pass/fail tests.
package bench
